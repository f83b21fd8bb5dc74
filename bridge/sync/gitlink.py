"""Carry local git's ssh traffic over bridge's own authenticated Connection.

git runs `GIT_SSH_COMMAND host 'git-receive-pack '\\''/path'\\'''`. We point that at a tiny
stdlib relay (RELAY, run with `python -I -S`) which hands the command to this process over a
private unix socket; we check it names exactly the expected service and repo and run it with
the transport's run_stream (over SSH: host keys, `via`, identity and ports follow the one SSH
layer; any transport that keeps bridge.transport's contract carries git this way), verbatim: a
restricted key's forced command (bridge guard) matches `git-receive-pack PATH` word for word. The relay's
command, and everything back to it, are bridge.frames' frames (1 byte kind + 4 byte length +
payload): C the command, 1 stdout, 2 stderr, X the exit status. The relay, which cannot import
bridge, reads that layout with struct `!cI` (the same bytes as HEADER).
"""
from __future__ import annotations

import os
import shlex
import shutil
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

from bridge import frames, unixserver
from bridge.errors import BridgeError, ConnectError
from bridge.server.scripts import UPLOAD

if TYPE_CHECKING:
    from bridge.transport import Transport

SERVICES = ("git-receive-pack", "git-upload-pack")
COMMAND, OUT, ERR, EXIT = b"C", b"1", b"2", b"X"
CHUNK = 65536

# Runs under `python -I -S -c`: stdlib only, ~15 ms to start. argv: socket, host, command.
RELAY = r"""
import os,socket,struct,sys,threading
s=socket.socket(socket.AF_UNIX);s.connect(sys.argv[1])
a="\0".join(sys.argv[2:]).encode("utf-8","surrogateescape");s.sendall(struct.pack("!cI",b"C",len(a))+a)
""" + UPLOAD + r"""
b=b"";code=255
while True:
    d=s.recv(262144)
    if not d:
        break
    b+=d
    while len(b)>=5:
        k,n=struct.unpack("!cI",b[:5])
        if len(b)<5+n:
            break
        p=b[5:5+n];b=b[5+n:]
        if k==b"X":
            code=int(p)
        else:
            fd=1 if k==b"1" else 2
            while p:
                p=p[os.write(fd,p):]
if code==255:
    os.write(2,b"bridge: the connection to the server was lost\n")
os._exit(code)
"""


@dataclass
class LinkState:
    """What happened on the link, for the caller's error message: refused commands, dropped connections."""

    errors: list[BridgeError] = field(default_factory=list)


class GitLink:
    """A unix-socket relay server bound to one transport and one repo path; a context manager.

    `env()` is what a local `git push/fetch` needs; `url` is the remote to give it. `before` (say,
    opening the connection and making sure the server is prepared) starts at once, overlapping
    git's own start-up, and every git session waits for it.
    """

    def __init__(self, transport: "Transport", repo_path: str, before: Callable[[], Any] | None = None) -> None:
        self.transport = transport
        self.repo_path = repo_path
        self.state = LinkState()
        self._before = threading.Thread(target=self._run_before, args=(before,), daemon=True)
        self._before_error: BridgeError | None = None
        self._dir = tempfile.mkdtemp(prefix="bridge-git-")  # 0700; /tmp keeps the socket path short
        self._path = os.path.join(self._dir, "s")
        self._server = unixserver.listen(self._path, 0o600, backlog=4)
        self._thread = threading.Thread(target=unixserver.accept_loop, args=(self._server, self._serve),
                                        kwargs={"name": "git-session"}, daemon=True)

    def __enter__(self) -> "GitLink":
        self._before.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def url(self) -> str:
        """scp-like, so git passes no port (the `simple` ssh variant refuses one)."""
        return "bridge:" + self.repo_path

    def env(self) -> dict[str, str]:
        """Environment for git: our relay as ssh, protocol variant `simple` (no `-G` probe, no options)."""
        relay = shlex.join([sys.executable, "-I", "-S", "-c", RELAY, self._path])
        return {"GIT_SSH_COMMAND": relay, "GIT_SSH_VARIANT": "simple", "GIT_SSH": ""}

    def close(self) -> None:
        """Stop accepting and remove the socket folder."""
        try:
            self._server.close()
            if self._before.is_alive():
                self._before.join()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)

    def _run_before(self, before: Callable[[], Any] | None) -> None:
        try:
            if before is not None:
                before()
        except BridgeError as e:
            self._before_error = e

    def _ready(self) -> None:
        """Wait for `before`; its failure fails the git session (and is what the caller reports)."""
        self._before.join()
        if self._before_error is not None:
            raise self._before_error

    def _serve(self, client: socket.socket) -> None:
        """One git session: validate the command, run it on the server, relay bytes and the exit code."""
        with client:
            try:
                command = self._checked_command(_read_args(client))
                self._ready()
                status = self._relay(client, command)
            except BridgeError as e:
                self.state.errors.append(e)
                _send(client, ERR, f"bridge: {e.message}\n".encode())
                status = 255
            _send(client, EXIT, str(status).encode())
            _hang_up(client)

    def _checked_command(self, args: list[str]) -> str:
        """Only `git-receive-pack`/`git-upload-pack` of our repo may run; rebuild it, never forward it."""
        try:
            words = shlex.split(args[-1]) if args else []
        except ValueError:
            words = []
        if len(words) != 2 or words[0] not in SERVICES or words[1] != self.repo_path:
            raise BridgeError(f"refused git command {args[-1] if args else ''!r}: expected a git service "
                              f"on {self.repo_path!r}")
        return shlex.join(words)

    def _relay(self, client: socket.socket, command: str) -> int:
        try:
            result = self.transport.run_stream(command, stdin=_uploads(client), capture=False, verbatim=True,
                                               on_stdout=lambda d: _send(client, OUT, d),
                                               on_stderr=lambda d: _send(client, ERR, d))
        except ConnectError as e:
            raise ConnectError(f"{self.transport.describe()}: connection lost during git transfer",
                               hint="nothing was deployed; check the server, then push again") from e
        if result.exit_code == 255:  # the transport's "no status came"; git's services exit 0, 1 or 128
            raise ConnectError(f"{self.transport.describe()}: {command.split()[0]} ended without an exit status "
                               "(killed, or the connection dropped)")
        return result.exit_code


def _uploads(client: socket.socket) -> Iterator[bytes]:
    """git's stdin (the pack we push, or fetch negotiation), until it shuts its side: then EOF to the server."""
    while data := client.recv(CHUNK):
        yield data


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise BridgeError("the git relay hung up before sending its command")
        data += chunk
    return data


def _read_args(sock: socket.socket) -> list[str]:
    """The relay's C frame: its argv, NUL-separated. Read exactly, not through a Peer's buffer: the bytes
    after it are git's raw stream, for _uploads."""
    kind, size = frames.HEADER.unpack(_read_exact(sock, frames.HEADER.size))
    if kind != COMMAND:
        raise BridgeError("the git relay sent something other than its command")
    return _read_exact(sock, size).decode("utf-8", "surrogateescape").split("\0")


def _hang_up(sock: socket.socket) -> None:
    """EOF to the relay now: close() alone would not send it while the stdin thread still blocks in
    recv() (the server refused, so git never ends its side): the relay, git and push would wait."""
    try:
        sock.shutdown(socket.SHUT_RDWR)  # also wakes that recv() with b""
    except OSError:
        pass  # the relay is gone already


def _send(sock: socket.socket, kind: bytes, payload: bytes) -> None:
    try:
        sock.sendall(frames.frame(kind, payload))
    except OSError:
        pass  # git went away (killed, or it already failed); nothing left to tell it
