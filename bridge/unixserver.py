"""The one unix-socket server of bridge: bind with a mode, then accept clients, each on its own thread.

Used by the connection keeper (bridge.ssh.keeper), the audit writer (bridge.security.auditd) and
the git relay's server (bridge.sync.gitlink). Imported only by servers, never the warm client.
"""
from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Callable


def listen(path: str, mode: int = 0o600, backlog: int = 64) -> socket.socket:
    """Bind `path` with `mode`, replacing a stale socket file (callers hold the lock or own the folder).

    The mode is set on the bound path before listen(): until then a connect is refused whatever the
    mode, so no client ever meets the umask's. (Not os.umask around bind: that is process-wide, and a
    keeper's first client is already being served on another thread.)
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        os.chmod(path, mode)
        listener.listen(backlog)
    except BaseException:
        listener.close()
        raise
    return listener


def accept_loop(listener: socket.socket, handle: Callable[[socket.socket], None], *,
                admit: Callable[[socket.socket], bool] | None = None, tick: float | None = None,
                on_tick: Callable[[], bool] | None = None, name: str = "client") -> None:
    """Accept until the listener is closed (returns) or `on_tick`, called every `tick` seconds without a
    new client, returns True; a client `admit` refuses is closed at once; each other runs `handle` on a
    daemon thread, which owns (and closes) its socket."""
    listener.settimeout(tick)
    while True:
        try:
            sock, _ = listener.accept()
        except socket.timeout:
            if on_tick is not None and on_tick():
                return
            continue
        except OSError:
            return  # closed under us: the server is shutting down
        if admit is not None and not admit(sock):
            sock.close()
            continue
        threading.Thread(target=handle, args=(sock,), daemon=True, name=name).start()


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end, as the kernel saw it connect (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)


def same_user(sock: socket.socket) -> bool:
    """SO_PEERCRED: only processes of our own uid may use what this server holds."""
    return peer_credentials(sock)[1] == os.getuid()
