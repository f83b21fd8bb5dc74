"""What every runner shares: the run lifecycle (stream, capture, timeout, result), the one stdin feeder,
and the env/cwd prelude. LocalRunner and SSHRunner fill in how bytes travel (bridge.transport's contract)."""
from __future__ import annotations

import re
import shlex
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from bridge.config import Remote
from bridge.errors import UsageError
from bridge.result import ExecResult
from bridge.transport import TIMED_OUT, Link, Pipe, PtySession, Sink, Stdin

GRACE = 5.0  # seconds past a timeout before the client gives up on the server's own kill
CHUNK = 65536
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class _Capture:
    """Forwards output to a sink and, when asked, keeps a copy for the ExecResult."""

    def __init__(self, sink: Sink | None, keep: bool) -> None:
        self.sink = sink
        self.parts: list[bytes] | None = [] if keep else None

    def __call__(self, data: bytes) -> None:
        if self.parts is not None:
            self.parts.append(data)
        if self.sink is not None:
            self.sink(data)

    def value(self) -> bytes:
        return b"".join(self.parts or ())


def feed_stdin(stdin: Stdin, write: Callable[[bytes], Any], close: Callable[[], Any]) -> None:
    """Send stdin from a thread (a big stdin must not block output), then EOF; None means EOF at once."""
    if stdin is None:
        close()
        return

    def run() -> None:
        try:
            for chunk in [stdin] if isinstance(stdin, bytes) else stdin:
                write(chunk)
            close()
        except (OSError, EOFError):
            pass  # the command exited without reading all of its stdin

    threading.Thread(target=run, daemon=True, name="stdin").start()


def exports(env: Mapping[str, str]) -> list[str]:
    """`export K='v'` per variable: works where sshd has no AcceptEnv, any bytes in the value."""
    for name in env:
        if not _ENV_NAME.match(name):
            raise UsageError(f"invalid environment variable name {name!r}", hint="use --env NAME=VALUE")
    return [f"export {name}={shlex.quote(value)}" for name, value in env.items()]


def prelude(script: str, env: Mapping[str, str] | None, cwd: str | None) -> str:
    """`script` entered into `cwd` (exit 2 when it cannot be: never run elsewhere) with `env` exported."""
    lines = [f"cd -- {shlex.quote(cwd)} || exit 2"] if cwd else []
    return "\n".join([*lines, *exports(env or {}), script]) if lines or env else script


class Runner:
    """Where commands run (bridge.transport.Transport): `name` for display, `path` the remote's folder."""

    def __init__(self, remote: Remote, path: str) -> None:
        self.remote = remote
        self.name = remote.name
        self.path = path

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection, if any."""

    def cancel(self) -> None:
        """Stop a run in progress (its client went away); a finished run is left alone."""

    def signal(self, sig: int) -> None:
        """Send `sig` to the whole tree of the run in progress; none running: nothing."""

    def connect(self) -> Link:
        raise NotImplementedError

    def trust_host_key(self) -> str:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def git_url(self, repo: str) -> str | None:
        return None

    def open_pty(self, command: str, *, size: tuple[int, int] = (80, 24)) -> PtySession:
        raise NotImplementedError

    def open_pipe(self, *, port: int | None = None, unix: str | None = None, host: str = "127.0.0.1") -> Pipe:
        raise NotImplementedError

    def open_stdio(self, command: str) -> Pipe:
        raise NotImplementedError

    def run_capture(self, command: str, *, stdin: bytes | None = None,
                    timeout: float | None = None) -> tuple[int, bytes, bytes]:
        """Run `command` with sh and return (exit code, stdout, stderr). Raises TimeoutExpired."""
        raise NotImplementedError

    def run_stream(self, script: str, *, stdin: Stdin = None, on_stdout: Sink | None = None,
                   on_stderr: Sink | None = None, timeout: float | None = None,
                   capture: bool = True, env: Mapping[str, str] | None = None,
                   cwd: str | None = None, verbatim: bool = False) -> ExecResult:
        """Run sh `script`, stream its output to the sinks as it arrives, end it all at `timeout` (→ 124);
        `verbatim`: send `script` byte for byte (a forced command on the server matches it word for word).

        Raises ConnectError when the server cannot be reached; the command's own failure is the result.
        """
        if verbatim and (env or cwd or timeout):
            raise UsageError("a verbatim run takes no env, cwd or timeout: each would change its text")
        out, err = _Capture(on_stdout, capture), _Capture(on_stderr, capture)
        began = time.monotonic()
        code = self._execute(prelude(script, env, cwd), stdin, out, err, timeout, verbatim)
        duration = time.monotonic() - began
        timed_out = bool(timeout) and code == TIMED_OUT and duration >= timeout  # type: ignore[operator]
        return ExecResult(code, out.value(), err.value(), duration, timed_out, self.name)

    def _execute(self, script: str, stdin: Stdin, out: Sink, err: Sink, timeout: float | None,
                 verbatim: bool) -> int:
        """Run to the end and return the exit status (124 when the timeout ended it)."""
        raise NotImplementedError
