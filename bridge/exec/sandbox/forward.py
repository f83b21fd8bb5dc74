"""A server's Docker engine on a local unix socket, carried over bridge's own SSH connection.

Each connection to the local socket becomes one stdio pipe (bridge.transport's `open_stdio`: over
SSH an exec channel) running `docker system dial-stdio` on the server (what Docker's own ssh://
transport does), spliced to it: the one host-key policy of bridge/ssh holds, and the server needs
the docker CLI (which `bridge test` checks) and a login user allowed on its docker socket.
The socket lives in a fresh 0700 folder in bridge's runtime dir, itself 0600.
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bridge.paths import ensure_private_dir, runtime_dir
from bridge.ssh.splice import splice

from .engine import Engine

if TYPE_CHECKING:
    from bridge.transport import Pipe

DIAL_STDIO = "docker system dial-stdio"
Dial = Callable[[], "Pipe"]  # opens one pipe (an SSH channel) whose stdin/stdout are a connection to the engine


class DockerForward:
    """A listening local socket whose connections reach the remote engine; close() stops it.

    `last_error` holds what the server last said on a channel's stderr (e.g. docker missing there;
    a pipe that keeps stderr as an SSH channel does, `recv_stderr`),
    so an engine error can say why instead of only "the connection closed".
    A new channel costs a login shell (its rc files) and a docker CLI start on the server (measured
    on the test sshd: ~0.7-1 s under load, against ~2 ms for a stream the old private-API code
    opened), so one spare channel is always dialled ahead: each new engine connection (every run's
    attach takes one) finds it ready, and dialling the next happens off the run's path.
    """

    def __init__(self, dial: Dial) -> None:
        self.dial = dial
        self.last_error: str | None = None
        self._spare: Pipe | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.dir = tempfile.mkdtemp(prefix="docker-", dir=ensure_private_dir(runtime_dir()))
        self.path = os.path.join(self.dir, "engine.sock")
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        os.chmod(self.path, 0o600)
        self.server.listen(64)
        threading.Thread(target=self._accept, name="docker-forward", daemon=True).start()
        threading.Thread(target=self._dial_spare, daemon=True, name="docker-spare").start()

    @property
    def base_url(self) -> str:
        return f"unix://{self.path}"

    def engine(self, hint: str) -> Engine:
        """A client of the server's engine through this forward; its errors say what the server said."""
        return Engine(self.base_url, hint=hint, detail=lambda: self.last_error)

    def close(self) -> None:
        """Stop listening, drop the spare channel and remove the private socket dir (open streams end
        with their channels)."""
        with self._lock:
            self._closed, spare, self._spare = True, self._spare, None
        if spare is not None:
            spare.close()
        self.server.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "DockerForward":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client,), daemon=True, name="docker-stream").start()

    def _serve(self, client: socket.socket) -> None:
        try:
            channel = self._channel()
        except Exception as e:  # noqa: BLE001 - the client sees a closed connection; the engine says why
            self.last_error = str(e).splitlines()[0] if str(e) else type(e).__name__
            client.close()
            return
        splice(client, _Telling(channel, self))

    def _channel(self) -> "Pipe":
        """The spare when it is still running (its dial-stdio exits when the engine or the link is gone),
        else a new one; either way the next spare is dialled on a thread."""
        with self._lock:
            spare, self._spare = self._spare, None
        threading.Thread(target=self._dial_spare, daemon=True, name="docker-spare").start()
        if spare is not None and _running(spare):
            return spare
        if spare is not None:
            spare.close()
        return self.dial()

    def _dial_spare(self) -> None:
        """Dial a channel to keep ready; a failure leaves none (the next connection dials and says why)."""
        try:
            channel = self.dial()
        except Exception:  # noqa: BLE001 - reported by the connection that needs one
            return
        with self._lock:
            kept, old = (None, channel) if self._closed else (channel, self._spare)
            self._spare = kept
        if old is not None:
            old.close()


class _Telling:
    """The channel as a splice stream that notes the server's stderr as its output ends, so the note is
    there before the engine client sees the connection close (stderr arrives before EOF, in order)."""

    def __init__(self, channel: "Pipe", forward: DockerForward) -> None:
        self.channel, self.forward = channel, forward

    def recv(self, size: int, /) -> bytes:
        data = self.channel.recv(size)
        if not data:
            self.forward.last_error = _stderr_tail(self.channel)
        return data

    def sendall(self, data: bytes, /) -> None:
        self.channel.sendall(data)

    def shutdown(self, how: int, /) -> None:
        self.channel.shutdown(how)

    def close(self) -> None:
        try:
            self.channel.close()
        except EOFError:  # the SSH connection ended first (a hub:// stream closes as soon as the run is done)
            pass


def forward_docker_socket(dial: Dial) -> DockerForward:
    """Serve a server's engine locally, one `dial()`ed channel per connection; `.base_url` says where."""
    return DockerForward(dial)


def _running(pipe: "Pipe") -> bool:
    """False when the pipe is known to be over (an SSH channel closed, or its command exited)."""
    ended = getattr(pipe, "exit_status_ready", None)
    return not getattr(pipe, "closed", False) and not (ended is not None and ended())


def _stderr_tail(channel: "Pipe") -> str | None:
    """The last line the server wrote on the channel's stderr (None when it said nothing, or the pipe keeps none)."""
    ready, read = getattr(channel, "recv_stderr_ready", None), getattr(channel, "recv_stderr", None)
    data = b""
    while ready is not None and read is not None and ready():
        data += read(65536)
    lines = data.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else None
