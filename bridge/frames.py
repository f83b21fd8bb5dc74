"""The one framed stream protocol of bridge's unix sockets: 1 byte kind, 4 bytes big-endian length, payload.

The connection keeper (bridge.ssh.keeper), the audit writer (bridge.security.auditd) and the git
relay (bridge.sync.gitlink, whose stdlib relay script reads the same layout) all speak it; what a
kind means is each protocol's own. Stdlib only, and `_socket`, not `socket`, at import time: the
warm `bridge exec` client loads it (socket costs ~10 ms of imports).
"""
from __future__ import annotations

import _socket
import _thread
import struct
TYPE_CHECKING = False  # not typing's: importing typing took a warm exec from 18.5 to 34 ms CPU (1.98x to
# 3.67x ControlMaster, interleaved runs). mypy reads the name as True (tests/test_types.py); a keeper test
# keeps typing off the warm path.
if TYPE_CHECKING:
    from typing import Any

HEADER = struct.Struct(">cI")


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    """One whole frame, for a writer that has no Peer (a plain socket it also pumps raw bytes through)."""
    return HEADER.pack(kind, len(payload)) + payload


class FrameTooLarge(ValueError):
    """A frame's length is over the receiver's limit: its payload is not read, the stream is lost."""


class Peer:
    """One end of a keeper connection: whole frames in and out; sends are thread-safe."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self._send_lock = _thread.allocate_lock()  # not threading: ~7 ms of imports
        self._buffer = bytearray()

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        with self._send_lock:
            if len(payload) < 16384:
                self.sock.sendall(frame(kind, payload))  # one write for the small frames of a short command
            else:
                self.sock.sendall(HEADER.pack(kind, len(payload)))
                self.sock.sendall(payload)

    def send_with_fds(self, kind: bytes, payload: bytes, fds: list[int]) -> None:
        """One frame carrying open file descriptors (SCM_RIGHTS): the peer gets its own copies of them."""
        rights = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] if fds else []
        data = HEADER.pack(kind, len(payload)) + payload
        with self._send_lock:
            sent = self.sock.sendmsg([data], rights)
            if sent < len(data):
                self.sock.sendall(data[sent:])

    def recv_with_fds(self, most: int = 2) -> tuple[bytes, bytes, list[int]]:
        """The next frame and the descriptors sent with it (send_with_fds); call it only with nothing buffered."""
        import socket

        data, ancillary, _flags, _addr = self.sock.recvmsg(262144, socket.CMSG_SPACE(most * 4))
        if not data:
            raise EOFError("keeper connection closed")
        fds: list[int] = []
        for level, kind, blob in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += struct.unpack(f"{len(blob) // 4}i", blob[:len(blob) - len(blob) % 4])
        self._buffer += data
        frame_kind, payload = self.recv()
        return frame_kind, payload, fds

    def recv(self, most: int = 0) -> tuple[bytes, bytes]:
        """The next frame; raises EOFError when the other side has gone, FrameTooLarge past `most` bytes."""
        kind, size = HEADER.unpack(self._read(HEADER.size))
        if most and size > most:
            raise FrameTooLarge(f"a {size}-byte frame, over the {most}-byte limit")
        return kind, self._read(size) if size else b""

    def _read(self, size: int) -> bytes:
        if size <= len(self._buffer) or size < 65536:
            return self._read_buffered(size)
        return self._read_into(size)

    def _read_buffered(self, size: int) -> bytes:
        """Small reads (headers, short output) go through a buffer: few syscalls for many frames."""
        while len(self._buffer) < size:
            data = self.sock.recv(262144)
            if not data:
                raise EOFError("keeper connection closed")
            self._buffer += data
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def _read_into(self, size: int) -> bytes:
        """A big payload is received straight into its own buffer: no growing and trimming of a bytearray."""
        out = bytearray(size)
        have = len(self._buffer)
        out[:have] = self._buffer
        self._buffer.clear()
        view = memoryview(out)
        while have < size:
            got = self.sock.recv_into(view[have:])
            if not got:
                raise EOFError("keeper connection closed")
            have += got
        return bytes(out)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def connect(path: str) -> Peer | None:
    """A connection to the server on `path`, or None when there is none (missing or stale socket)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return Peer(sock)
