"""This machine, through the same code paths as a server, without SSH."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

from bridge.config import Remote
from bridge.errors import ConnectError, TimeoutExpired, UsageError
from bridge.runners.base import CHUNK, GRACE, Runner, feed_stdin
from bridge.server.scripts import signal_argv, timeout_argv
from bridge.transport import TIMED_OUT, Link, Sink, Stdin

if TYPE_CHECKING:
    import socket


class LocalRunner(Runner):
    """Runs sh here, in a session of its own, starting in the home directory as sshd would."""

    def __init__(self, remote: Remote, path: str) -> None:
        super().__init__(remote, path)
        self._proc: subprocess.Popen | None = None
        self._tag: str | None = None  # BRIDGE_RUN in the environment of the run in progress's tree

    def connect(self) -> Link:
        import getpass

        return Link(self.describe(), getpass.getuser(), verified_host_key=False)

    def trust_host_key(self) -> str:
        raise ConnectError("this machine has no host key to trust", hint="drop --trust for a local remote")

    def describe(self) -> str:
        return "this machine"

    def git_url(self, repo: str) -> str | None:
        return repo

    def cancel(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            _kill_group(proc)

    def signal(self, sig: int) -> None:
        """Found by its BRIDGE_RUN tag, as on a server: the timeout wrapper's child leads a group of its
        own, so a signal to the run's group would reach the wrapper alone."""
        tag = self._tag
        if tag is not None:
            subprocess.run(signal_argv(tag, signal.Signals(sig).name, False, sys.executable), check=False)

    def run_capture(self, command: str, *, stdin: bytes | None = None,
                    timeout: float | None = None) -> tuple[int, bytes, bytes]:
        try:
            proc = subprocess.run(["/bin/sh", "-c", command], input=stdin or b"", capture_output=True,
                                  timeout=timeout, start_new_session=True, cwd=os.path.expanduser("~"))
        except subprocess.TimeoutExpired as e:
            raise TimeoutExpired(f"local command did not finish within {timeout:g}s") from e
        return _status(proc.returncode), proc.stdout, proc.stderr

    def _execute(self, script: str, stdin: Stdin, out: Sink, err: Sink, timeout: float | None,
                 verbatim: bool) -> int:
        """`verbatim` changes nothing here: the script's text reaches sh as is either way."""
        wrapped = bool(timeout and timeout > 0)  # the same timeout wrapper as a server's, with our Python
        tag = self._tag = os.urandom(8).hex()
        argv = timeout_argv(script, timeout, sys.executable, tag) if wrapped else ["/bin/sh", "-c", script]  # type: ignore[arg-type]
        proc = self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, start_new_session=True,
                                             cwd=os.path.expanduser("~"),
                                             env=None if wrapped else {**os.environ, "BRIDGE_RUN": tag})
        readers = [_drain(proc.stdout, out), _drain(proc.stderr, err)]
        feed_stdin(stdin, lambda chunk: _send(proc, chunk), proc.stdin.close)  # type: ignore[union-attr]
        try:
            code = _wait_or_kill(proc, timeout)
        except KeyboardInterrupt:
            _interrupt(proc, wrapped)
            raise
        finally:
            self._proc = self._tag = None
        for reader in readers:
            reader.join()
        return code

    def open_pty(self, command: str, *, size: tuple[int, int] = (80, 24)) -> "LocalPty":
        return LocalPty(command, size)

    def open_pipe(self, *, port: int | None = None, unix: str | None = None,
                  host: str = "127.0.0.1") -> "socket.socket":
        import socket

        if unix is None and port is None:
            raise UsageError("open_pipe needs a port or a unix socket path")
        try:
            if unix is None:
                sock = socket.create_connection((host, port), timeout=10)
                sock.settimeout(None)
                return sock
            sock = socket.socket(socket.AF_UNIX)
            try:
                sock.connect(unix)
            except OSError:
                sock.close()
                raise
        except OSError as e:
            raise ConnectError(f"this machine: cannot reach {unix or f'{host}:{port}'}: {e.strerror or e}",
                               hint="is something listening there?") from e
        return sock


    def open_stdio(self, command: str) -> "socket.socket":
        """One end of a socketpair whose other end is sh `command`'s stdin and stdout (stderr dropped)."""
        import socket

        ours, theirs = socket.socketpair()
        with theirs:
            proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=theirs.fileno(), stdout=theirs.fileno(),
                                    stderr=subprocess.DEVNULL, start_new_session=True, cwd=os.path.expanduser("~"))
        threading.Thread(target=proc.wait, daemon=True, name="stdio-reap").start()
        return ours


class LocalPty:
    """sh on a new pseudo-terminal here, leading its own session with it as the controlling terminal."""

    def __init__(self, command: str, size: tuple[int, int]) -> None:
        import fcntl
        import termios

        self.master, slave = os.openpty()
        self.resize(*size)
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", command], stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            cwd=os.path.expanduser("~"),
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))  # the PTY turns Ctrl-C into SIGINT
        os.close(slave)

    def read(self, timeout: float) -> bytes | None:
        import select

        if self.master < 0:
            return b""
        if not select.select([self.master], [], [], timeout)[0]:
            return None
        try:
            return os.read(self.master, CHUNK)
        except OSError:  # EIO: every process holding the terminal has gone
            return b""

    def write(self, data: bytes) -> None:
        while data:
            data = data[os.write(self.master, data):]

    def resize(self, columns: int, rows: int) -> None:
        import fcntl
        import struct
        import termios

        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def wait(self) -> int:
        return _status(self.proc.wait())

    def close(self) -> None:
        if self.master >= 0:
            os.close(self.master)  # the terminal hangs up: its session gets SIGHUP
            self.master = -1
        if self.proc.poll() is None:
            _kill_group(self.proc, signal.SIGHUP)


def _send(proc: subprocess.Popen, chunk: bytes) -> None:
    """One stdin chunk, flushed: a conversation (git's protocol) must not wait in our buffer."""
    proc.stdin.write(chunk)  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]


def _drain(pipe: object, sink: Sink) -> threading.Thread:
    """Copy a pipe to `sink` from a thread until EOF."""

    def run() -> None:
        fd = pipe.fileno()  # type: ignore[attr-defined]
        while data := os.read(fd, CHUNK):
            sink(data)
        pipe.close()  # type: ignore[attr-defined]

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
    return _status(code)


def _status(returncode: int) -> int:
    """As a shell reports it: 128+N for signal N (subprocess says -N)."""
    return 128 - returncode if returncode < 0 else returncode


def _interrupt(proc: subprocess.Popen, wrapped: bool) -> None:
    """Ctrl-C: told with SIGTERM, the timeout wrapper ends its run's tree itself (SIGKILL included) and
    exits; an unwrapped run's group is ended here."""
    if wrapped:
        proc.terminate()
        proc.wait()
    else:
        _kill_group(proc)


def _kill_group(proc: subprocess.Popen, first: int = signal.SIGTERM) -> None:
    """`first` to the whole session, then SIGKILL to what is left half a second later."""
    for sig in (first, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    proc.wait()
