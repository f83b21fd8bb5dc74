"""Run a command on a target, the same way for `local://` and `ssh://`.

`open_runner(config, remote)` gives a LocalRunner or an SSHRunner; both take a command
string that the caller built with shlex.quote / shlex.join, never from raw input.
`run_capture` is for short control commands; `run_stream` owns a whole user run (stream,
stdin, timeout of the whole process tree, Ctrl-C) and returns one ExecResult.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Union

from bridge.config import Config, Remote
from bridge.errors import TimeoutExpired
from bridge.result import ExecResult
from bridge.targets import parse_url

if TYPE_CHECKING:
    import paramiko

    from bridge.ssh.connection import Connection
    from bridge.ssh.pool import ConnectionPool

Sink = Callable[[bytes], None]
Stdin = Union[bytes, Iterable[bytes], None]
TIMED_OUT = 124
GRACE = 5.0  # seconds past a timeout before the client gives up on the server's own kill
CHUNK = 65536

# The one way a run ends at its timeout, on a server and here alike. argv: [seconds, sh script].
# The script leads a new session; at the deadline (or when the wrapper itself is signalled: Ctrl-C
# on a local run) its whole process group, background children too, gets SIGTERM, and SIGKILL if
# any of it still runs half a second later; the wrapper exits as soon as none does. A member that
# is already a zombie has ended: it stays in the group until its new parent reaps it, which a
# container's PID 1 may never do (read from /proc, Linux; elsewhere the group must be empty).
# Exit: the script's status, 128+N when a signal killed it, or 124. python3 because sh has no
# portable setsid, and the server has Python 3 anyway (DESIGN §5).
_TIMEOUT_WRAPPER = """\
import os, signal, sys, time
t, script = float(sys.argv[1]), sys.argv[2]
pid = os.fork()
if pid == 0:
    os.setsid()
    os.execv('/bin/sh', ['/bin/sh', '-c', script])
def running():
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.killpg(pid, 0)
        names = os.listdir('/proc')
    except OSError as e:
        return not isinstance(e, ProcessLookupError)
    for name in names:
        try:
            with open('/proc/' + name + '/stat') as f:
                state, _, group = f.read().rpartition(')')[2].split()[:3]
        except (OSError, ValueError):
            continue
        if int(group) == pid and state != 'Z':
            return True
    return False
def stop(*_):
    for sig, wait in ((signal.SIGTERM, 0.5), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except OSError:
            break
        end = time.monotonic() + wait
        while running() and time.monotonic() < end:
            time.sleep(0.01)
        if not running():
            break
    os._exit(124)
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, stop)
signal.signal(signal.SIGALRM, stop)
signal.setitimer(signal.ITIMER_REAL, t)
_, status = os.waitpid(pid, 0)
signal.setitimer(signal.ITIMER_REAL, 0)
os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
"""


def with_timeout(script: str, timeout: float | None) -> str:
    """Wrap sh `script` so the server ends its whole process tree at `timeout` seconds (none: unchanged)."""
    if not timeout or timeout <= 0:
        return script
    return shlex.join(timeout_argv(script, timeout))


def timeout_argv(script: str, timeout: float, python: str = "python3") -> list[str]:
    """argv that runs sh `script` under the timeout wrapper (`python`: the server's python3, or ours here)."""
    return [python, "-c", _TIMEOUT_WRAPPER, f"{timeout:g}", script]


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
        except OSError:
            pass  # the command exited without reading all of its stdin

    threading.Thread(target=run, daemon=True, name="stdin").start()


class Runner:
    """Where commands run: `name` for display, `path` the remote's folder, `run_capture` for short commands."""

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
        """Stop waiting for a run in progress (its client went away); a finished run is left alone."""

    def run_capture(self, command: str, *, stdin: bytes | None = None,
                    timeout: float | None = None) -> tuple[int, bytes, bytes]:
        """Run `command` with sh and return (exit code, stdout, stderr). Raises TimeoutExpired."""
        raise NotImplementedError

    def run_stream(self, script: str, *, stdin: Stdin = None, on_stdout: Sink | None = None,
                   on_stderr: Sink | None = None, timeout: float | None = None,
                   capture: bool = True) -> ExecResult:
        """Run sh `script`, stream its output to the sinks as it arrives, end it all at `timeout` (→ 124).

        Raises ConnectError when the server cannot be reached; the command's own failure is the result.
        """
        out, err = _Capture(on_stdout, capture), _Capture(on_stderr, capture)
        began = time.monotonic()
        code = self._execute(script, stdin, out, err, timeout)
        duration = time.monotonic() - began
        timed_out = bool(timeout) and code == TIMED_OUT and duration >= timeout  # type: ignore[operator]
        return ExecResult(code, out.value(), err.value(), duration, timed_out, self.name)

    def _execute(self, script: str, stdin: Stdin, out: Sink, err: Sink, timeout: float | None) -> int:
        """Run to the end and return the exit status (124 when the timeout ended it)."""
        raise NotImplementedError


class LocalRunner(Runner):
    """This machine, through the same code paths as a server, without SSH."""

    is_local = True

    def run_capture(self, command: str, *, stdin: bytes | None = None,
                    timeout: float | None = None) -> tuple[int, bytes, bytes]:
        try:
            proc = subprocess.run(["/bin/sh", "-c", command], input=stdin or b"", capture_output=True,
                                  timeout=timeout, start_new_session=True)
        except subprocess.TimeoutExpired as e:
            raise TimeoutExpired(f"local command did not finish within {timeout:g}s") from e
        return proc.returncode, proc.stdout, proc.stderr

    def _execute(self, script: str, stdin: Stdin, out: Sink, err: Sink, timeout: float | None) -> int:
        wrapped = bool(timeout and timeout > 0)  # the same timeout wrapper as a server's, with our Python
        argv = timeout_argv(script, timeout, sys.executable) if wrapped else ["/bin/sh", "-c", script]  # type: ignore[arg-type]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, cwd=os.path.expanduser("~"))
        readers = [_drain(proc.stdout, out), _drain(proc.stderr, err)]  # type: ignore[arg-type]
        feed_stdin(stdin, proc.stdin.write, proc.stdin.close)  # type: ignore[union-attr]
        try:
            code = _wait_or_kill(proc, timeout)
        except KeyboardInterrupt:
            _interrupt(proc, wrapped)
            raise
        for reader in readers:
            reader.join()
        return code


class SSHRunner(Runner):
    """A server over the one SSH layer; the connection opens on first use."""

    is_local = False

    def __init__(self, remote: Remote, path: str, connection: "Connection", *, owned: bool = True) -> None:
        super().__init__(remote, path)
        self.connection = connection
        self.owned = owned
        self._channel: "paramiko.Channel | None" = None

    def close(self) -> None:
        if self.owned:
            self.connection.close()

    def cancel(self) -> None:
        """Close the running command's channel: pump() then ends with ConnectError, the thread is free."""
        channel = self._channel
        if channel is not None:
            channel.close()

    def run_capture(self, command: str, *, stdin: bytes | None = None,
                    timeout: float | None = None) -> tuple[int, bytes, bytes]:
        return self.connection.run(command, stdin=stdin, timeout=timeout)

    def _execute(self, script: str, stdin: Stdin, out: Sink, err: Sink, timeout: float | None) -> int:
        from bridge.ssh.pump import pump

        channel = self._channel = self.connection.exec_channel(with_timeout(script, timeout))
        try:
            feed_stdin(stdin, channel.sendall, channel.shutdown_write)
            deadline = time.monotonic() + timeout + GRACE if timeout else None
            status = pump(channel, on_stdout=out, on_stderr=err, deadline=deadline)
        finally:
            self._channel = None
            channel.close()
        if status is None:
            return TIMED_OUT
        return status if status >= 0 else 255  # -1: the server sent no status (connection lost)


def open_runner(config: Config, remote: Remote, *, pool: "ConnectionPool | None" = None) -> Runner:
    """A runner for `remote`; SSH connects lazily so building one never blocks.

    With a `pool`, the connection comes from (and stays in) it: closing the runner keeps it open.
    """
    endpoint = parse_url(remote.url, where=f"remotes.{remote.name}.url")
    if endpoint.is_local:
        return LocalRunner(remote, endpoint.path)
    from bridge.ssh.connection import Connection
    from bridge.ssh.settings import for_remote

    settings, hint = for_remote(config, remote), f"bridge test --trust {remote.name}"
    if pool is not None:
        return SSHRunner(remote, endpoint.path, pool.get(settings, trust_hint=hint), owned=False)
    return SSHRunner(remote, endpoint.path, Connection(settings, trust_hint=hint))


def _drain(pipe: Any, sink: Sink) -> threading.Thread:
    """Copy a pipe to `sink` from a thread until EOF."""

    def run() -> None:
        fd = pipe.fileno()
        while data := os.read(fd, CHUNK):
            sink(data)
        pipe.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait_or_kill(proc: subprocess.Popen, timeout: float | None) -> int:
    """The exit status as a shell reports it (128+N for a signal); the timeout wrapper ends the run at
    `timeout` (124), and the group is killed here only if it has not within GRACE seconds more."""
    try:
        code = proc.wait(timeout + GRACE if timeout and timeout > 0 else None)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return TIMED_OUT
    return 128 - code if code < 0 else code


def _interrupt(proc: subprocess.Popen, wrapped: bool) -> None:
    """Ctrl-C: told with SIGTERM, the timeout wrapper ends its run's tree itself (SIGKILL included) and
    exits; an unwrapped run's group is ended here."""
    if wrapped:
        proc.terminate()
        proc.wait()
    else:
        _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the whole session, then SIGKILL what is left half a second later."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    proc.wait()
