"""Join two byte streams (sockets or SSH channels) until both directions are done: bridge's one splice.

Used by the tunnel (a relay's forwarded channel and a local TCP socket) and by the sandbox's
engine forward (a local unix socket and a channel to the server's engine). Each direction has its
own thread blocked in recv (the GIL is released), so bytes move with no polling. Each side's EOF
is passed on as a half-close, as ssh does (docker's attach relies on it: stdin's end ends the
command). Not pump.py: that drains one command's stdout, stderr and exit status into sinks.
"""
from __future__ import annotations

import socket
import threading
from typing import Protocol

CHUNK = 65536


class Stream(Protocol):
    """What a socket and a paramiko Channel both offer (shutdown(SHUT_WR) is a channel's shutdown_write)."""

    def recv(self, size: int, /) -> bytes: ...

    def sendall(self, data: bytes, /) -> object: ...

    def shutdown(self, how: int, /) -> object: ...

    def close(self) -> object: ...


def splice(a: Stream, b: Stream, *, read_a: int = CHUNK, read_b: int = CHUNK) -> None:
    """Copy a → b here and b → a on a thread, reading up to `read_a`/`read_b` bytes at a time;
    when both directions ended (EOF or a break on either side), close both."""
    upstream = threading.Thread(target=_copy, args=(b, a, read_b), daemon=True, name="splice")
    upstream.start()
    _copy(a, b, read_a)
    upstream.join()
    a.close()
    b.close()


def _copy(source: Stream, sink: Stream, size: int) -> None:
    """One direction; at the source's EOF half-close the sink so its reader sees the end too."""
    try:
        while data := source.recv(size):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except (OSError, EOFError):  # paramiko raises EOFError when the SSH connection is already gone
        _abort(source, sink)


def _abort(*streams: Stream) -> None:
    """One side broke: end both so the other direction's thread wakes up and ends too."""
    for stream in streams:
        try:
            if isinstance(stream, socket.socket):
                stream.shutdown(socket.SHUT_RDWR)  # wakes its reader (a close under a reader may hit a reused fd)
            else:
                stream.close()  # a channel: close wakes its reader; paramiko's shutdown only feigns a read EOF
        except (OSError, EOFError):
            pass
