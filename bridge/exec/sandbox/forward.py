"""A server's Docker engine on a local unix socket, carried over bridge's own SSH connection.

Each client connection to the local socket becomes one `direct-streamlocal@openssh.com`
channel (RFC 4254 §7.2 style, OpenSSH PROTOCOL §2.4) to the server's docker.sock, so the one
host-key policy of bridge/ssh holds and nothing needs installing on the server. paramiko has
no API for that channel type (`Transport.open_channel` only fills in direct-tcpip/x11 fields),
so `_open_streamlocal` builds the CHANNEL_OPEN itself, mirroring paramiko 3.x-5.x
`Transport.open_channel` (https://github.com/paramiko/paramiko/blob/main/paramiko/transport.py).
The server's sshd needs `AllowStreamLocalForwarding yes` (OpenSSH's default) and the login
user needs access to the docker socket.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from typing import TYPE_CHECKING, Any

from bridge.errors import SandboxError

if TYPE_CHECKING:
    import paramiko

REMOTE_SOCKET = "/var/run/docker.sock"
CHUNK = 65536


class DockerForward:
    """A listening local socket whose connections reach the remote engine; close() stops it."""

    def __init__(self, transport: "paramiko.Transport", remote_path: str = REMOTE_SOCKET) -> None:
        self.transport = transport
        self.remote_path = remote_path
        self.dir = tempfile.mkdtemp(prefix="bridge-docker-")  # mkdtemp: mode 0700, ours only
        self.path = os.path.join(self.dir, "docker.sock")
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(64)
        threading.Thread(target=self._accept, name="docker-forward", daemon=True).start()

    @property
    def base_url(self) -> str:
        """What `Engine`/`connect_engine` take."""
        return f"unix://{self.path}"

    def close(self) -> None:
        """Stop listening and remove the private socket dir (open streams end with the transport)."""
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
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            channel = _open_streamlocal(self.transport, self.remote_path)
        except Exception:  # noqa: BLE001 - the client sees a closed connection and reports the engine unreachable
            client.close()
            return
        _splice(client, channel)


def forward_docker_socket(transport: "paramiko.Transport", remote_path: str = REMOTE_SOCKET) -> DockerForward:
    """Serve the remote engine's socket locally over `transport`; `.path`/`.base_url` say where."""
    if not transport.is_active():
        raise SandboxError("the SSH connection to the server is closed", "run the command again")
    # paramiko logs a refused channel at ERROR; with no handler, Python's last-resort handler would
    # print it on the terminal beside bridge's own one-line error (the engine's SandboxError).
    quiet = logging.getLogger("paramiko.transport")
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
    return DockerForward(transport, remote_path)


def _open_streamlocal(transport: "paramiko.Transport", path: str, timeout: float = 10.0) -> "paramiko.Channel":
    """Open a direct-streamlocal@openssh.com channel: socket path, reserved string, reserved uint32."""
    from paramiko.channel import Channel
    from paramiko.common import cMSG_CHANNEL_OPEN
    from paramiko.message import Message

    with transport.lock:
        chanid = transport._next_channel()
        msg = Message()
        msg.add_byte(cMSG_CHANNEL_OPEN)
        msg.add_string("direct-streamlocal@openssh.com")
        msg.add_int(chanid)
        msg.add_int(transport.default_window_size)
        msg.add_int(transport.default_max_packet_size)
        msg.add_string(path)
        msg.add_string("")
        msg.add_int(0)
        channel = Channel(chanid)
        transport._channels.put(chanid, channel)
        transport.channel_events[chanid] = event = threading.Event()
        transport.channels_seen[chanid] = True
        channel._set_transport(transport)
        channel._set_window(transport.default_window_size, transport.default_max_packet_size)
    transport._send_user_message(msg)
    return _await_open(transport, chanid, event, timeout, path)


def _await_open(transport: "paramiko.Transport", chanid: int, event: threading.Event, timeout: float,
                path: str) -> "paramiko.Channel":
    end = time.monotonic() + timeout
    while not event.wait(0.1):
        if not transport.is_active() or time.monotonic() > end:
            break
    channel = transport._channels.get(chanid)
    if channel is None or not event.is_set():
        raise SandboxError(f"the server refused a stream to {path}",
                           "allow StreamLocalForwarding in the server's sshd_config and check docker is running there")
    return channel


def _splice(client: socket.socket, channel: "paramiko.Channel") -> None:
    """Copy both ways; each side's EOF is passed on as a half-close (docker attach relies on it)."""
    upstream = threading.Thread(target=_client_to_channel, args=(client, channel), daemon=True)
    upstream.start()
    try:
        while data := channel.recv(CHUNK):
            client.sendall(data)
        client.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    upstream.join()
    try:
        channel.close()
    except EOFError:  # the SSH connection ended first (a hub:// stream closes as soon as the run is done)
        pass
    client.close()


def _client_to_channel(client: socket.socket, channel: "paramiko.Channel") -> None:
    try:
        while data := client.recv(CHUNK):
            channel.sendall(data)
        channel.shutdown_write()
    except (OSError, EOFError):  # paramiko raises EOFError when the SSH connection is already gone
        channel.close()
