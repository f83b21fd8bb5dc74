"""Carry each forwarded connection: the relay's channel on one side, a local TCP socket on the other.

paramiko calls the forward handler on its transport thread, so the handler only starts a thread;
connecting to the local target and pumping happen there. Each direction has its own thread blocked
in recv (the GIL is released), which moves bytes with no polling and half-closes like ssh does.
"""
from __future__ import annotations

import socket
import threading
from typing import TYPE_CHECKING, Callable

from bridge.tunnel.forwards import Forward

if TYPE_CHECKING:
    import paramiko

CHUNK = 65536
# OpenSSH offers 32 KiB packets on forwarded channels and paramiko keeps 64 bytes of them for headers:
# reading exactly one packet's worth per recv never leaves a tiny third packet behind a 64 KiB read.
PACKET_CHUNK = 32768 - 64
Log = Callable[[str], None]


class Router:
    """The transport's one forward handler: sends each channel to the target of the relay port it came in on."""

    def __init__(self, forwards: tuple[Forward, ...], log: Log, connect_timeout: float = 10.0) -> None:
        self._targets = {f.relay_port: (f.local_host, f.local_port) for f in forwards}
        self._log = log
        self._connect_timeout = connect_timeout

    def __call__(self, channel: "paramiko.Channel", origin: tuple[str, int], server: tuple[str, int]) -> None:
        target = self._targets.get(server[1])
        if target is None:
            channel.close()
            return
        threading.Thread(target=self._serve, args=(channel, target), daemon=True,
                         name=f"tunnel-{server[1]}").start()

    def _serve(self, channel: "paramiko.Channel", target: tuple[str, int]) -> None:
        try:
            sock = socket.create_connection(target, timeout=self._connect_timeout)
        except OSError as e:
            self._log(f"forwarded connection to {target[0]}:{target[1]} failed: {e.strerror or e}")
            channel.close()
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)
        splice(channel, sock)


def splice(channel: "paramiko.Channel", sock: socket.socket) -> None:
    """Pump both ways until both sides are done, then close both."""
    upstream = threading.Thread(target=_sock_to_channel, args=(sock, channel), daemon=True)
    upstream.start()
    _channel_to_sock(channel, sock)
    upstream.join()
    channel.close()
    sock.close()


def _channel_to_sock(channel: "paramiko.Channel", sock: socket.socket) -> None:
    """Relay → local; at the relay's EOF half-close the socket so the local side sees it."""
    try:
        while data := channel.recv(CHUNK):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        _abort(channel, sock)


def _sock_to_channel(sock: socket.socket, channel: "paramiko.Channel") -> None:
    """Local → relay; at the local EOF send EOF on the channel."""
    try:
        while data := sock.recv(PACKET_CHUNK):
            channel.sendall(data)
        channel.shutdown_write()
    except OSError:
        _abort(channel, sock)


def _abort(channel: "paramiko.Channel", sock: socket.socket) -> None:
    """One side broke: close both so the other direction's thread wakes up and ends too."""
    channel.close()
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
