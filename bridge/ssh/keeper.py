"""The connection keeper: a background process per user and environment (`identity()`: HOME, XDG
dirs, agent, BRIDGE_*; its socket is named by a checksum of it and of the code on disk) that holds authenticated SSH
connections, so a second `bridge exec` skips the handshake (OpenSSH's ControlMaster/ControlPersist idea).

This module is the transport only, and stdlib-only at import time (the warm client loads it):
the unix socket (0600 in the 0700 runtime dir, peers of another uid refused with SO_PEERCRED),
spawning as a daemon, and serving until idle. Frames are bridge.frames'; the records in them, and
what a request means, are the caller's (bridge.exec.requests, bridge.exec.keeperd); connections come
from the SSH layer's pool, so host keys and identities are checked exactly as for a direct connection.
The client side uses `_socket` and no json: `socket` and `json` cost ~10 ms of imports.
"""
from __future__ import annotations

import _socket
import _thread
import os
import time
TYPE_CHECKING = False  # not typing's: importing typing took a warm exec from 18.5 to 34 ms CPU (1.98x to
# 3.67x ControlMaster, interleaved runs). mypy reads the name as True (tests/test_types.py); a keeper test
# keeps typing off the warm path.
if TYPE_CHECKING:
    import socket
    from typing import Callable

from bridge import frames
from bridge.frames import Peer

DEFAULT_IDLE = 300.0
# Settings that change nothing a keeper's connections depend on (or are secrets, never hashed into a name)
_IDENT_SKIP = {"BRIDGE_RUN", "BRIDGE_KEEPER_IDLE", "BRIDGE_DEBUG", "BRIDGE_NO_REUSE", "BRIDGE_SUDO_PASSWORD"}


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


def code_stamp() -> int:
    """The code a keeper runs, as it is on disk: inode, mtime and size of each .py file of the bridge
    package (what Python checks its .pyc files against; ~0.3 ms). A keeper keeps the code it started
    with for as long as it serves, so a CLI whose files changed since (an upgrade, a checkout) must
    not meet it: whatever changed, the protocol of its records or the behaviour of a run."""
    import bridge

    stamps = []
    folders = [os.path.dirname(bridge.__file__)]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.name.endswith(".py"):
                    st = entry.stat()
                    stamps.append((st.st_ino, st.st_mtime_ns, st.st_size))
                elif entry.name != "__pycache__" and entry.is_dir():
                    folders.append(entry.path)
    return hash(tuple(sorted(stamps)))  # ints only: the same in every process of this Python (no str hash seed)


def instance_name() -> str:
    """`keeper-<checksum of identity() and code_stamp()>`: one keeper per identity, so two shells that
    differ in HOME or a BRIDGE_* setting each get a warm keeper of their own instead of one declining
    the other, and one per version of the code, so a CLI never talks to a keeper older or newer than itself."""
    checksum = 0xCBF29CE484222325  # FNV-1a, 64 bits: no hashlib or binascii import on the warm path
    for byte in repr([code_stamp(), identity()]).encode():
        checksum = ((checksum ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"keeper-{checksum:016x}"


def socket_path(name: str | None = None) -> str:
    return os.path.join(runtime_dir(), (name or instance_name()) + ".sock")


def lock_path(name: str | None = None) -> str:
    """The flock a running keeper holds, with its PID in it."""
    return os.path.join(runtime_dir(), (name or instance_name()) + ".lock")


def connect(path: str | None = None) -> Peer | None:
    """A connection to a running keeper, or None when there is none (missing or stale socket)."""
    return frames.connect(path or socket_path())


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
    # os._exit in both forked children: as the os docs say of a child after fork(), it must not run
    # the client's atexit work or flush the client's stdio buffers a second time.
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
    from bridge import unixserver  # the daemon's side only: the warm client never loads socket/threading

    state = {"active": 0, "last": time.monotonic()}
    state_lock = _thread.allocate_lock()
    private_dir(runtime_dir())
    name = instance_name()  # once: the code on disk may change while we serve, our name must not
    lock = _take_lock(lock_path(name))
    if lock is None:
        if first is not None:
            _client(first, handler, state, state_lock)
        return
    if first is not None:
        import threading

        threading.Thread(target=_serve_first, args=(first, handler, state, state_lock), daemon=True).start()

    def idle_over() -> bool:
        with state_lock:
            if not state["active"] and time.monotonic() - state["last"] > idle:
                return True
        if on_idle:
            on_idle()
        return False

    listener = unixserver.listen(socket_path(name))
    try:
        unixserver.accept_loop(listener, lambda sock: _client(sock, handler, state, state_lock),
                               admit=unixserver.same_user, tick=1.0, on_tick=idle_over, name="keeper-client")
    finally:
        os.unlink(socket_path(name))
        listener.close()
        os.close(lock)


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
