"""Run a child process for the guard: plainly with inherited pipes, or inside a recorded PTY.

The guard must outlive its child to write the audit line, so signals that would end the
guard (SIGHUP when the SSH client goes away, SIGTERM, SIGINT) are passed on to the child, and
a client that vanished mid-session (its terminal gone: EIO, its pipe closed: EPIPE) ends the
copying, never the guard. Each child is confined (bridge.security.confine) before it execs.
"""
from __future__ import annotations

import errno
import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import tty
from collections.abc import Iterator
from contextlib import contextmanager

from bridge.security.confine import Confinement, drop_privilege
from bridge.security.recording import Recorder

FORWARDED = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)


def exit_status(status: int) -> int:
    """A wait status as a shell exit code: the code, or 128 + the signal that killed it."""
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


@contextmanager
def forward_signals(pid: int) -> Iterator[None]:
    """While the child runs, send it the signals meant for us instead of dying."""

    def handler(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    previous = {sig: signal.signal(sig, handler) for sig in FORWARDED}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_plain(argv: list[str], confinement: Confinement) -> int:
    """Run `argv` confined, with our stdin/stdout/stderr, so its bytes reach the SSH client unchanged.

    Raises OSError when it cannot be started or confined (then it never ran).
    """
    try:
        proc = subprocess.Popen(argv, env=dict(confinement.env), preexec_fn=lambda: drop_privilege(confinement))
    except subprocess.SubprocessError as e:  # the preexec_fn failed: the child exited before exec
        raise OSError(f"cannot confine {argv[0]}: {e}") from e
    with forward_signals(proc.pid):
        code = proc.wait()
    return code if code >= 0 else 128 - code


def run_in_pty(argv: list[str], recorder: Recorder, confinement: Confinement, stdin_fd: int = 0,
               stdout_fd: int = 1) -> int:
    """Run `argv` confined on a new PTY, copying our stdin to it and its output to stdout and the recording."""
    pid, master = pty.fork()
    if pid == 0:
        _exec_child(argv, confinement)
    _copy_winsize(stdin_fd, master)
    saved = _raw(stdin_fd)
    try:
        with forward_signals(pid), _on_resize(stdin_fd, master, recorder):
            _Pump(master, stdin_fd, stdout_fd, recorder).run()
    finally:
        _restore(stdin_fd, saved)
        os.close(master)  # a child still running (its client vanished) gets its terminal's hangup: SIGHUP
    _pid, status = os.waitpid(pid, 0)
    return exit_status(status)


def _exec_child(argv: list[str], confinement: Confinement) -> None:
    """In the forked child: confine, become `argv`, or exit 127 like a shell when either fails."""
    try:
        drop_privilege(confinement)
        os.execvpe(argv[0], argv, dict(confinement.env))
    finally:
        os._exit(127)


def _restore(fd: int, saved: list | None) -> None:
    """Give the client's terminal its settings back; it may be gone already (`kill -9` of ssh: EIO)."""
    if saved is None:
        return
    try:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    except (termios.error, OSError):
        pass  # nothing left to restore: sshd closed that terminal


def _raw(fd: int) -> list | None:
    """Put a terminal stdin in raw mode (keys go straight to the PTY); returns the old settings."""
    if not os.isatty(fd):
        return None
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)  # the default TCSAFLUSH would drop keys typed before we started
    return saved


def window_size(fd: int) -> tuple[int, int]:
    """(columns, rows) of the terminal on `fd`, 80x24 when it is not one."""
    try:
        rows, cols, _x, _y = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return 80, 24
    return (cols or 80), (rows or 24)


def _copy_winsize(src: int, dst: int) -> None:
    """Give the PTY the size of our terminal."""
    cols, rows = window_size(src)
    fcntl.ioctl(dst, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


@contextmanager
def _on_resize(src: int, master: int, recorder: Recorder) -> Iterator[None]:
    """Pass terminal resizes (SIGWINCH) to the PTY and the recording."""

    def handler(_signum: int, _frame: object) -> None:
        _copy_winsize(src, master)
        recorder.resize(*window_size(src))

    previous = signal.signal(signal.SIGWINCH, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)


class _Pump:
    """Copies bytes both ways until the PTY closes or the client can no longer be written to."""

    def __init__(self, master: int, stdin_fd: int, stdout_fd: int, recorder: Recorder) -> None:
        self.master, self.stdin_fd, self.stdout_fd, self.recorder = master, stdin_fd, stdout_fd, recorder

    def run(self) -> None:
        """Until the child closes the PTY (it exited) or the client went away."""
        inputs = [self.master, self.stdin_fd]
        while True:
            try:
                ready, _w, _x = select.select(inputs, [], [])
            except InterruptedError:
                continue
            if self.master in ready and not self.from_pty():
                return
            if self.stdin_fd in inputs and self.stdin_fd in ready and not self.to_pty():
                inputs.remove(self.stdin_fd)

    def from_pty(self) -> bool:
        """Forward one read of PTY output to the recording and the client; False once either end is gone."""
        data = _read(self.master)
        if not data:
            return False
        self.recorder.output(data)
        try:
            _write_all(self.stdout_fd, data)
        except OSError:  # EIO: sshd closed the client's terminal; EPIPE: its channel (`kill -9` of ssh)
            return False
        return True

    def to_pty(self) -> bool:
        """Forward one read of our stdin; at EOF (or a vanished terminal) send ^D so the shell ends.

        False once stdin is done, or the child already closed its terminal (EIO: it exited first).
        """
        try:
            data = _read(self.stdin_fd)
            _write_all(self.master, data or b"\x04")
        except OSError:  # ECONNRESET from sshd's socket, EIO from a PTY whose child is gone
            return False
        if data:
            self.recorder.input(data)
        return bool(data)


def _read(fd: int) -> bytes:
    """One read; b"" at EOF and for a closed terminal (Linux reports a hung-up PTY as EIO)."""
    try:
        return os.read(fd, 65536)
    except OSError as e:
        if e.errno == errno.EIO:
            return b""
        raise


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is out."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
