"""The transport contract: what every way of reaching a target (local, ssh, hub://, the next one) provides.

Features (exec, shell, sudo, push/pull/status, rollback, sandbox, `bridge test`) talk to a target through
this interface and nothing else; `bridge.runners.open_runner` gives the implementation for a remote.
A new transport plugs in by implementing `Transport` alone and passing tests/transport/test_conformance.py.

Guarantees every implementation makes:

* Commands are POSIX sh text the caller built with shlex (never raw input). They run in the login
  directory unless `cwd` says otherwise; `env` is exported before the command runs (names must be
  shell identifiers: UsageError otherwise; values are any text).
* stdout and stderr arrive apart and byte-exact (binary safe), each in order, as they are produced.
* stdin: bytes or an iterable of bytes, sent from a thread (a big stdin never blocks output), then EOF;
  None is EOF at once. A command that exits without reading all of it is not an error.
* Over ssh a command runs in the login shell, as `ssh HOST COMMAND` would run it (bash syntax works
  where that shell is bash); under a timeout the timeout wrapper runs it with /bin/sh. run_capture
  sends its command byte for byte, and so does run_stream with `verbatim` (no env, cwd or timeout
  then): a forced command on the server (bridge guard) matches such a request word for word
  (`git-receive-pack PATH`, `bridge audit head`). Any other run_stream script the transport may
  frame (a tag line before it, `exit $?` on a line after it), never changing what it means.
* Exit status: the command's own, 128+N when signal N killed a child of the script's shell (as sh
  reports it); 124 when `timeout` ended it, and then its whole process tree (background children
  too) has been ended (SIGTERM, then SIGKILL) before the call returns; 255 when the far side sent
  no status (connection lost). When a signal kills the script's shell itself: 128+N here, 255 over
  ssh (sshd sends `exit-signal`, which paramiko drops), unless it ran under the timeout wrapper.
* `cancel()` from another thread ends a run in progress and its whole tree on the target
  (SIGTERM, then SIGKILL half a second later; background children too): `run_stream` then returns
  or raises ConnectError soon; a finished run is left alone. `signal(sig)` sends one signal to
  that tree and nothing more (the command decides what it means). Over ssh both find the tree by
  a BRIDGE_RUN tag in its processes' environment (a process that clears its environment escapes
  them) and the login shell by the tag line its command starts with, not by sshd's `signal`
  request, which paramiko cannot send through a public API; a `verbatim` run carries no tag: cancel
  closes its channel, and signal() may not reach it. Ctrl-C (KeyboardInterrupt) in the caller's
  thread ends the run and re-raises.
* A PTY session carries bytes both ways; keys such as Ctrl-C reach the command as its terminal's
  signals (SIGINT); `resize` changes the size the command sees (`stty size`) and sends it SIGWINCH;
  closing it hangs up (SIGHUP). Output and stderr are merged, as on a terminal.
* A pipe is a byte stream to a TCP port or unix socket *on the target*, socket-like (`sendall`,
  `recv` returning b"" at EOF, `shutdown(socket.SHUT_WR)` to half-close, `close`): the shape
  bridge.ssh.splice joins, so a pipe splices to a local socket as is. Nothing listening: ConnectError.
  `open_stdio(command)` is the same kind of pipe to sh `command`'s stdin and stdout on the target
  (the sandbox's `docker system dial-stdio`): half-closing it is EOF on the command's stdin, the
  command's exit is EOF on the pipe; its stderr is not in the stream (an SSH channel keeps it for
  `recv_stderr`, as paramiko does; elsewhere it is dropped).
* `connect()`'s Link names, in `carrier`, what pipes ride on (compared by identity): another carrier
  from a later connect() (a pool replaced the connection) means pipes opened earlier may be gone.
* Git: `git_url(repo)` is a URL local git can use itself, or None; then git reaches `repo` through
  `run_stream(verbatim=True)` of `git-receive-pack` / `git-upload-pack` (bridge.sync.gitlink relays
  it), which every transport therefore supports.
* Errors: ConnectError (255) when the target cannot be reached or the connection drops;
  UnknownHostKey / ChangedHostKey / AuthError from `connect()`; TimeoutExpired from `run_capture`.
  The command's own failure is never an exception: it is the exit status.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Union

if TYPE_CHECKING:
    from bridge.result import ExecResult

Sink = Callable[[bytes], None]
Stdin = Union[bytes, Iterable[bytes], None]
TIMED_OUT = 124


@dataclass(frozen=True)
class Link:
    """What `connect()` established, for `bridge test`: where, as whom, and whether a host key was checked."""

    where: str
    user: str
    verified_host_key: bool  # False: nothing to verify (this machine)
    carrier: object = field(default=None, compare=False)  # what pipes ride on (identity); None: nothing between


class PtySession(Protocol):
    """A command on a pseudo-terminal: bytes both ways, a size, an exit status."""

    def read(self, timeout: float) -> bytes | None:
        """Output that arrived within `timeout` seconds; None: nothing yet; b"": the command ended."""

    def write(self, data: bytes) -> None:
        """Keys to the command's terminal (b"\\x03" is Ctrl-C: SIGINT to it)."""

    def resize(self, columns: int, rows: int) -> None:
        """The terminal's new size; the command gets SIGWINCH."""

    def wait(self) -> int:
        """The exit status once read() returned b"" (128+N for signal N, 255 when none came)."""

    def close(self) -> None:
        """Hang up: a command still running gets SIGHUP. Idempotent."""


class Pipe(Protocol):
    """A socket-like byte stream to a listener on the target (a socket or a paramiko Channel is one)."""

    def recv(self, size: int, /) -> bytes: ...

    def sendall(self, data: bytes, /) -> object: ...

    def shutdown(self, how: int, /) -> object: ...

    def close(self) -> object: ...


class Transport(Protocol):
    """One target reached one way; a context manager that releases its connection. See the module contract."""

    name: str  # the remote's name, for messages and results
    path: str  # the remote's folder on the target

    def connect(self) -> Link:
        """Reach and authenticate now (else the first run does); raises ConnectError, HostKeyError, AuthError."""

    def trust_host_key(self) -> str:
        """Add the target's unknown host key to known_hosts; its fingerprint. Only after UnknownHostKey."""

    def describe(self) -> str:
        """Where this transport goes, for messages: `user@host:port`, or `this machine`."""

    def run_capture(self, command: str, *, stdin: bytes | None = None,
                    timeout: float | None = None) -> tuple[int, bytes, bytes]:
        """A short control command: (exit status, stdout, stderr); TimeoutExpired past `timeout`.

        Unlike run_stream it needs nothing on the target beyond sh (no timeout wrapper)."""

    def run_stream(self, script: str, *, stdin: Stdin = None, on_stdout: Sink | None = None,
                   on_stderr: Sink | None = None, timeout: float | None = None, capture: bool = True,
                   env: Mapping[str, str] | None = None, cwd: str | None = None,
                   verbatim: bool = False) -> "ExecResult":
        """A whole run: output streamed to the sinks (and kept when `capture`), the timeout ending its tree;
        `verbatim`: the target gets `script` byte for byte (UsageError with env, cwd or a timeout)."""

    def cancel(self) -> None:
        """End the run in progress, its whole tree on the target (called from another thread)."""

    def signal(self, sig: int) -> None:
        """Send signal `sig` (this machine's number; it travels by name) to the run in progress's tree."""

    def open_pty(self, command: str, *, size: tuple[int, int] = (80, 24)) -> PtySession:
        """`command` on a new PTY of `size` (columns, rows)."""

    def open_pipe(self, *, port: int | None = None, unix: str | None = None, host: str = "127.0.0.1") -> Pipe:
        """A byte stream to TCP `host:port` or unix socket `unix` as seen from the target."""

    def open_stdio(self, command: str) -> Pipe:
        """A byte stream to sh `command`'s stdin and stdout on the target (its stderr kept apart)."""

    def git_url(self, repo: str) -> str | None:
        """A URL local git reaches `repo` with by itself, or None (then: run_stream of the git service)."""

    def close(self) -> None:
        """Release the connection, if any; a second close does nothing."""
