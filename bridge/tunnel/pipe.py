"""Carry each forwarded connection: the relay's channel on one side, a local TCP socket on the other.

paramiko calls the forward handler on its transport thread, so the handler only starts a thread;
connecting to the local target and the splice (bridge/ssh/splice.py) happen there.
"""
from __future__ import annotations

import socket
import threading
from typing import TYPE_CHECKING, Callable

from bridge.ssh.splice import splice
from bridge.tunnel.forwards import Forward

if TYPE_CHECKING:
    import paramiko

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
        splice(channel, sock, read_b=PACKET_CHUNK)
