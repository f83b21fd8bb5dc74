"""The connection keeper: a background process per user and environment (`identity()`: HOME, XDG
dirs, agent, BRIDGE_*; its socket is named by a checksum of it) that holds authenticated SSH
connections, so a second `bridge exec` skips the handshake (OpenSSH's ControlMaster/ControlPersist idea).

This module is the transport only, and stdlib-only at import time (the warm client loads it):
the unix socket (0600 in the 0700 runtime dir, peers of another uid refused with SO_PEERCRED),
a tiny framed protocol, spawning as a daemon, and the accept loop that exits when idle. What a
request means is the caller's handler (bridge.exec.keeperd); connections come from the SSH
layer's pool, so host keys and identities are checked exactly as for a direct connection.

Frame: 1 byte kind, 4 bytes big-endian length, payload.
  client → keeper: R request (a Python literal; with it, the client's stdout and stderr as SCM_RIGHTS),
                   I stdin bytes, E stdin EOF
  keeper → client: A accepted, F fall back (reason), 1 stdout, 2 stderr, X exit ("CODE\n" + text for stderr;
                   also as the first frame, when the request failed before anything ran)
The client side uses `_socket` and no json: `socket` and `json` cost ~10 ms of imports.
"""
from __future__ import annotations

import _socket
import _thread
import os
import struct
import time
TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~9 ms on the warm exec path
if TYPE_CHECKING:
    import socket
    from typing import Any, Callable

HEADER = struct.Struct(">cI")
DEFAULT_IDLE = 300.0
# Settings that change nothing a keeper's connections depend on (or are secrets, never hashed into a name)
_IDENT_SKIP = {"BRIDGE_KEEPER_IDLE", "BRIDGE_DEBUG", "BRIDGE_NO_REUSE", "BRIDGE_SUDO_PASSWORD"}


def runtime_dir() -> str:
    """bridge.paths.runtime_dir() without importing pathlib (the warm path counts milliseconds)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isabs(base):
        return os.path.join(base, "bridge")
    return f"/tmp/bridge-{os.getuid()}"


def identity() -> list:
    """What makes a keeper's view of config and keys the same as ours: HOME, XDG dirs, agent, BRIDGE_*."""
    names = ["HOME", "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR", "SSH_AUTH_SOCK"]
    names += sorted(k for k in os.environ if k.startswith("BRIDGE_") and k not in _IDENT_SKIP)
    return [[k, os.environ.get(k)] for k in names]


def instance_name() -> str:
    """`keeper-<checksum of identity()>`: one keeper per identity, so two shells that differ in HOME or a
    BRIDGE_* setting each get a warm keeper of their own instead of one declining the other."""
    checksum = 0xCBF29CE484222325  # FNV-1a, 64 bits: no hashlib or binascii import on the warm path
    for byte in repr(identity()).encode():
        checksum = ((checksum ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"keeper-{checksum:016x}"


def socket_path() -> str:
    return os.path.join(runtime_dir(), instance_name() + ".sock")


def lock_path() -> str:
    """The flock a running keeper holds, with its PID in it."""
    return os.path.join(runtime_dir(), instance_name() + ".lock")


class FrameTooLarge(ValueError):
    """A frame's length is over the receiver's limit: its payload is not read, the stream is lost."""


class Peer:
    """One end of a keeper connection: whole frames in and out; sends are thread-safe."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self._send_lock = _thread.allocate_lock()  # not threading: ~7 ms of imports
        self._buffer = bytearray()

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        head = HEADER.pack(kind, len(payload))
        with self._send_lock:
            if len(payload) < 16384:
                self.sock.sendall(head + payload)  # one write for the small frames of a short command
            else:
                self.sock.sendall(head)
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


def connect(path: str | None = None) -> Peer | None:
    """A connection to a running keeper, or None when there is none (missing or stale socket)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path or socket_path())
    except OSError:
        sock.close()
        return None
    return Peer(sock)


def spawn(module: str) -> Peer | None:
    """Fork `module.main(first)` off this process as a daemon and return a peer already connected to it.

    A fork, not a new interpreter: the daemon starts with what this process has loaded (no
    interpreter start, no second sys.path setup), and it serves us over a socketpair it inherits,
    so the first request needs no listening socket and no polling. Double fork and a new session
    detach it; it keeps no fd of ours but its end of the pair (a client's stdout pipe held open
    would hang whoever reads it). None when the fork fails.
    """
    ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        pid = os.fork()
    except OSError:
        ours.close()
        theirs.close()
        return None
    if pid:
        theirs.close()
        os.waitpid(pid, 0)
        return Peer(ours)
    try:
        ours.close()
        os.setsid()
        if os.fork():
            os._exit(0)
        _detach(keep=theirs.fileno())
        import importlib
        import socket

        importlib.import_module(module).main(first=socket.socket(fileno=theirs.detach()))
    finally:
        os._exit(0)


def _detach(keep: int) -> None:
    """stdio on /dev/null and every other inherited fd closed but `keep`: a daemon holds nothing of its parent's."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))


def connect_or_spawn(module: str) -> Peer | None:
    """The running keeper, else a new one forked off this process; None if neither is possible."""
    return connect() or spawn(module)


if TYPE_CHECKING:
    Handler = Callable[[Peer], None]


def serve(handler: Handler, *, idle: float = DEFAULT_IDLE, on_idle: Callable[[], object] | None = None,
          first: "socket.socket | None" = None) -> None:
    """Serve `first` (the client that started us), then accept clients of this uid until `idle`
    seconds pass without one; each runs `handler` on a thread.

    When another keeper holds the lock (two clients raced to start one), serves only `first`.
    """
    state = {"active": 0, "last": time.monotonic()}
    state_lock = _thread.allocate_lock()
    private_dir(runtime_dir())
    lock = _take_lock(lock_path())
    if lock is None:
        if first is not None:
            _client(first, handler, state, state_lock)
        return
    if first is not None:
        import threading

        threading.Thread(target=_serve_first, args=(first, handler, state, state_lock), daemon=True).start()
    listener = listen(socket_path())
    try:
        _accept_loop(listener, handler, idle, state, state_lock, on_idle)
    finally:
        os.unlink(socket_path())
        listener.close()
        os.close(lock)


def _accept_loop(listener: "socket.socket", handler: Handler, idle: float, state: dict,
                 state_lock: _thread.LockType, on_idle: Callable[[], object] | None) -> None:
    import socket
    import threading  # the daemon's side only: the warm client never loads it

    listener.settimeout(1.0)
    while True:
        try:
            sock, _ = listener.accept()
        except socket.timeout:
            with state_lock:
                if not state["active"] and time.monotonic() - state["last"] > idle:
                    return
            if on_idle:
                on_idle()
            continue
        if not _same_user(sock):
            sock.close()
            continue
        threading.Thread(target=_client, args=(sock, handler, state, state_lock), daemon=True).start()


def _serve_first(sock: "socket.socket", handler: Handler, state: dict, state_lock: _thread.LockType) -> None:
    """The client that forked us, then a title of our own: until now ps showed that client's command
    line, arguments and all, which must not linger for the keeper's lifetime. Done after the first
    run, as the import is not free (setproctitle loads logging) and that run is waiting."""
    _client(sock, handler, state, state_lock)
    from setproctitle import setproctitle

    setproctitle("bridge keeper")


def _client(sock: "socket.socket", handler: Handler, state: dict, state_lock: _thread.LockType) -> None:
    with state_lock:
        state["active"] += 1
    peer = Peer(sock)
    try:
        handler(peer)
    except (OSError, EOFError):
        pass  # the client went away (Ctrl-C, closed pipe): its channel was closed by the runner
    finally:
        peer.close()
        with state_lock:
            state["active"] -= 1
            state["last"] = time.monotonic()


def _same_user(sock: "socket.socket") -> bool:
    """SO_PEERCRED: only processes of our own uid may use our connections."""
    return peer_credentials(sock)[1] == os.getuid()


def peer_credentials(sock: "socket.socket") -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end, as the kernel saw it connect (SO_PEERCRED)."""
    creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)


def private_dir(path: str) -> str:
    """The runtime dir, 0700 and ours (refuse one that belongs to someone else)."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.stat(path)
    if st.st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to uid {st.st_uid}")
    os.chmod(path, 0o700)
    return path


def _take_lock(path: str) -> int | None:
    """An exclusive flock held for the keeper's lifetime; None when another keeper has it."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def listen(path: str, mode: int = 0o600) -> "socket.socket":
    """Bind the socket with `mode`, replacing a stale one (we hold the lock, so nobody else serves it).

    The mode is set on the bound path before listen(): until then a connect is refused whatever the
    mode, so no client ever meets the umask's. (Not os.umask around bind: that is process-wide, and a
    keeper's first client is already being served on another thread.)
    """
    import socket

    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        os.chmod(path, mode)
    except OSError:
        listener.close()
        raise
    listener.listen(64)
    return listener
