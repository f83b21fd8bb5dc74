"""One sandboxed run: attach, hand the launcher its command, stream, enforce timeout and cap, remove."""
from __future__ import annotations

import re
import secrets
import shlex
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bridge.errors import SandboxError, UsageError
from bridge.result import ExecResult

from .box import Box, create_run_box, remove, start
from .cleanup import remove_leftovers
from .engine import Engine
from .pool import claim, refill, spawn_refill
from .spec import SandboxSpec

Sink = Callable[[bytes], None]
Later = Callable[[Callable[[], None]], None]  # runs a job once the result is out (the keeper: on a thread)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class _Output:
    """Captured output, capped across stdout and stderr together."""

    cap: int
    on_stdout: Sink | None = None
    on_stderr: Sink | None = None
    chunks: dict[int, list[bytes]] = field(default_factory=lambda: {1: [], 2: []})
    size: int = 0
    truncated: bool = False

    def add(self, stream: int, data: bytes) -> None:
        """Keep and forward `data` up to the cap; past it, only note the truncation."""
        room = self.cap - self.size
        if len(data) > room:
            data, self.truncated = data[:room], True
        if not data:
            return
        self.size += len(data)
        self.chunks.setdefault(stream, []).append(data)
        sink = self.on_stderr if stream == 2 else self.on_stdout
        if sink:
            sink(data)

    def get(self, stream: int) -> bytes:
        return b"".join(self.chunks.get(stream, []))


@dataclass
class _Ends:
    """The launcher's end report: `NONCE:CODE[:oom]` as the last line of stdout and of stderr once the command
    exits (`:oom` when the memory limit's OOM killer ended it: the engine's own flag can come late).

    Each stream arrives in order, so with both reports in, all of the command's output is too:
    ~50 ms before the engine reports the container's exit. The nonce is new for every run and
    in no environment, so output cannot end a run early by chance. What a stream carries after
    its report comes from processes outliving the command, which die with the container: dropped.
    """

    marker: bytes
    out: _Output
    held: dict[int, bytes] = field(default_factory=dict)
    codes: dict[int, int] = field(default_factory=dict)
    oom: bool = False

    def take(self, stream: int, data: bytes) -> None:
        """Pass output on, cutting the report off; a tail that may be the start of one waits for more."""
        if stream in self.codes:
            return
        data = self.held.pop(stream, b"") + data
        at = data.find(self.marker)
        if at < 0:
            keep = _prefix_len(data, self.marker)
            self.out.add(stream, data[:len(data) - keep])
            if keep:
                self.held[stream] = data[len(data) - keep:]
            return
        self.out.add(stream, data[:at])
        code, newline, _ = data[at + len(self.marker):].partition(b"\n")
        if not newline:
            self.held[stream] = data[at:]
        else:
            number, _, tag = code.partition(b":")
            self.codes[stream] = int(number) if number.isdigit() else 125
            self.oom = self.oom or tag == b"oom"

    def code(self) -> int | None:
        """The command's exit code, once both streams have reported it."""
        return self.codes[1] if len(self.codes) == 2 else None

    def flush(self) -> None:
        """The stream ended without a report (the launcher died with its container): a held tail was output."""
        for stream, data in sorted(self.held.items()):
            self.out.add(stream, data)
        self.held.clear()


def _prefix_len(data: bytes, marker: bytes) -> int:
    """How many bytes at the end of `data` could begin `marker`."""
    for size in range(min(len(marker) - 1, len(data)), 0, -1):
        if data.endswith(marker[:size]):
            return size
    return 0


class Cancel:
    """Ends a run from another thread (the keeper's client vanished): its container is removed at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._target: tuple[Engine, str] | None = None
        self.cancelled = False

    def __call__(self) -> None:
        with self._lock:
            self.cancelled, target, self._target = True, self._target, None
        if target:
            remove(*target)

    def arm(self, engine: Engine, box: Box) -> None:
        """From now on cancelling removes `box`; at once when the run was cancelled already."""
        with self._lock:
            self._target = None if self.cancelled else (engine, box.id)
        if self.cancelled:
            remove(engine, box.id)

    def disarm(self) -> None:
        """The run is over: a late cancel (the client hanging up after its result) does nothing."""
        with self._lock:
            self._target = None


def run_in_sandbox(spec: SandboxSpec, command: Sequence[str] | str, stdin: bytes | None = None,
                   env: dict[str, str] | None = None, timeout: float | None = None,
                   on_stdout: Sink | None = None, on_stderr: Sink | None = None, *,
                   engine: Engine, host: str = "local", later: Later | None = None,
                   cancel: Cancel | None = None) -> ExecResult:
    """Run an argv list (or a shell script string) in a fresh container and always remove it.

    The used container is removed (and the pool refilled) by `later` once the result is out
    (the keeper's thread), else here before returning, with the refill in a detached process.
    Raises SandboxError when the engine or the image is missing; the command's own failure,
    timeout, OOM kill or overlong output are reported in the ExecResult instead.
    """
    nonce = secrets.token_hex(16)
    header = launch_header(command, env or {}, nonce)
    limit = spec.timeout if timeout is None else timeout
    began = time.monotonic()
    box = _acquire(engine, spec)
    out = _Output(spec.output_cap, on_stdout, on_stderr)
    ends = _Ends(f"{nonce}:".encode(), out)
    try:
        if cancel:
            cancel.arm(engine, box)
        code, timed_out, oom = _attach_and_run(engine, box, header, stdin, ends, _deadline(began, limit))
    finally:
        if cancel:
            cancel.disarm()
        _dispose(engine, spec, box, later, exiting=ends.code() is not None)
    return ExecResult(exit_code=124 if timed_out else code, stdout_bytes=out.get(1), stderr_bytes=out.get(2),
                      duration=time.monotonic() - began, timed_out=timed_out, host=host,
                      truncated=out.truncated, status="oom" if oom else "")


def _dispose(engine: Engine, spec: SandboxSpec, box: Box, later: Later | None, exiting: bool) -> None:
    """Remove the used container and top the pool up: by `later` when given, else now (refill detached)."""
    if later is None:
        _retire(engine, box, exiting)
        if spec.pool:
            spawn_refill(engine, spec)
        return

    def job() -> None:
        _retire(engine, box, exiting)
        if spec.pool:
            refill(engine, spec)

    later(job)


def _retire(engine: Engine, box: Box, exiting: bool) -> None:
    """Remove a used container; one whose launcher reported and is exiting by itself is let exit first
    (measured: the engine takes ~25 ms longer to kill and remove it than to remove it once stopped)."""
    if exiting:
        try:
            engine.wait(box.id, timeout=5.0)
        except SandboxError:
            pass  # gone already, or slow to exit: the removal kills it
    remove(engine, box.id)


def launch_header(command: Sequence[str] | str, env: dict[str, str], nonce: str) -> bytes:
    """What the launcher reads on stdin (spec.INIT): the nonce, a line count, then env exports and
    the quoted argv to exec; the launcher reports `NONCE:CODE` on stdout and stderr when it exits (_Ends)."""
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    if not argv:
        raise UsageError("nothing to run in the sandbox")
    bad = [k for k in env if not _ENV_NAME.fullmatch(k)]
    if bad:
        raise UsageError(f"invalid environment variable name {bad[0]!r}")
    lines = [f"export {k}={shlex.quote(v)}" for k, v in env.items()] + [f"exec {shlex.join(argv)}"]
    script = "\n".join(lines)
    return f"{nonce}\n{script.count(chr(10)) + 1}\n{script}\n".encode()


def _acquire(engine: Engine, spec: SandboxSpec) -> Box:
    """A pooled container when one is ready, else a fresh one (after clearing a dead bridge's leftovers)."""
    if spec.pool:
        box = claim(engine, spec)
        if box:
            return box
    else:
        remove_leftovers(engine)
    return create_run_box(engine, spec)


def _deadline(began: float, limit: float) -> float | None:
    return began + limit if limit and limit > 0 else None


def _attach_and_run(engine: Engine, box: Box, header: bytes, stdin: bytes | None, ends: _Ends,
                    deadline: float | None) -> tuple[int, bool, bool]:
    """Returns (exit code, timed out, OOM-killed)."""
    sock = engine.attach(box.id)
    try:
        if not box.started:
            start(engine, box)
        _feed(sock, header, stdin)
        if not _pump(sock, ends, deadline):
            return 124, True, False
    finally:
        sock.close()
    if ends.out.truncated:
        remove(engine, box.id)  # stop a runaway writer now; the exit code is the kill's
        return 137, False, False
    code = ends.code()
    if code is not None and (code != 137 or ends.oom):  # a SIGKILL the init did not see as OOM: the engine tells
        return code, False, ends.oom
    return _wait(engine, box, deadline)


def _feed(sock: socket.socket, header: bytes, stdin: bytes | None) -> None:
    """Send the launcher its command, then stdin from a thread (so a big stdin cannot deadlock output), then EOF."""
    sock.sendall(header)
    if not stdin:
        sock.shutdown(socket.SHUT_WR)
        return

    def write() -> None:
        try:
            sock.sendall(stdin)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the command exited without reading all of its stdin

    threading.Thread(target=write, daemon=True).start()


def _pump(sock: socket.socket, ends: _Ends, deadline: float | None) -> bool:
    """Demultiplex docker's framed stream into `ends` until both end reports, EOF or the cap;
    False when the deadline passed."""
    buf = b""
    while True:
        buf = _frames(buf, ends)
        if ends.out.truncated or ends.code() is not None:
            return True
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            sock.settimeout(remaining)
        else:
            sock.settimeout(None)
        try:
            chunk = sock.recv(262144)
        except socket.timeout:
            return False
        except OSError as e:
            raise SandboxError(f"the docker engine dropped the run's stream: {e.strerror or e}",
                               "run it again; if it recurs, check the engine's log") from e
        if not chunk:
            ends.flush()
            return True
        buf += chunk


def _frames(buf: bytes, ends: _Ends) -> bytes:
    """Hand every whole frame of `buf` (8-byte header: stream, size) to `ends`; returns the rest."""
    while len(buf) >= 8:
        stream, size = struct.unpack(">BxxxL", buf[:8])
        if len(buf) < 8 + size:
            break
        ends.take(stream, buf[8:8 + size])
        buf = buf[8 + size:]
    return buf


def _wait(engine: Engine, box: Box, deadline: float | None) -> tuple[int, bool, bool]:
    """Wait for PID 1 to exit (output can close before it does); tell an OOM kill from other exits."""
    remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
    try:
        code = engine.wait(box.id, timeout=remaining)
    except SandboxError:
        if deadline is not None and time.monotonic() >= deadline:
            return 124, True, False
        raise
    if code != 137:
        return code, False, False
    state = engine.inspect(box.id)["State"]
    return code, False, bool(state.get("OOMKilled"))
