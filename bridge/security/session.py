"""Run a child process for the guard: plainly with inherited pipes, or inside a recorded PTY.

The guard must outlive its child to write the audit line, so signals that would end the
guard (SIGHUP when the SSH client goes away, SIGTERM, SIGINT) are passed on to the child.
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


def run_plain(argv: list[str]) -> int:
    """Run `argv` with our stdin/stdout/stderr, so its bytes reach the SSH client unchanged."""
    proc = subprocess.Popen(argv)
    with forward_signals(proc.pid):
        code = proc.wait()
    return code if code >= 0 else 128 - code


def run_in_pty(argv: list[str], recorder: Recorder, stdin_fd: int = 0, stdout_fd: int = 1) -> int:
    """Run `argv` on a new PTY, copying our stdin to it and its output to stdout and the recording."""
    pid, master = pty.fork()
    if pid == 0:
        _exec_child(argv)
    _copy_winsize(stdin_fd, master)
    saved = _raw(stdin_fd)
    try:
        with forward_signals(pid), _on_resize(stdin_fd, master, recorder):
            _pump(master, stdin_fd, stdout_fd, recorder)
        _pid, status = os.waitpid(pid, 0)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved)
        os.close(master)
    return exit_status(status)


def _exec_child(argv: list[str]) -> None:
    """In the forked child: become `argv`, or exit 127 like a shell when it cannot be run."""
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)


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


def _pump(master: int, stdin_fd: int, stdout_fd: int, recorder: Recorder) -> None:
    """Copy bytes both ways until the PTY closes (the child exited)."""
    inputs = [master, stdin_fd]
    while True:
        try:
            ready, _w, _x = select.select(inputs, [], [])
        except InterruptedError:
            continue
        if master in ready and not _from_pty(master, stdout_fd, recorder):
            return
        if stdin_fd in ready and not _to_pty(stdin_fd, master, recorder):
            inputs.remove(stdin_fd)


def _from_pty(master: int, stdout_fd: int, recorder: Recorder) -> bool:
    """Forward one read of PTY output; False once the PTY is closed."""
    try:
        data = os.read(master, 65536)
    except OSError as e:
        if e.errno == errno.EIO:  # Linux reports a closed PTY as EIO
            return False
        raise
    if not data:
        return False
    _write_all(stdout_fd, data)
    recorder.output(data)
    return True


def _to_pty(stdin_fd: int, master: int, recorder: Recorder) -> bool:
    """Forward one read of our stdin; at EOF send ^D so the shell ends, and return False."""
    data = os.read(stdin_fd, 65536)
    if not data:
        os.write(master, b"\x04")
        return False
    _write_all(master, data)
    recorder.input(data)
    return True


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is out."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
