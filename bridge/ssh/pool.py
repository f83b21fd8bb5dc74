"""Connections reused within one process: one per resolved settings (host, port, user, keys, jump)."""
from __future__ import annotations

import threading
import time

from bridge.ssh import hostkeys
from bridge.ssh.connection import Connection
from bridge.ssh.settings import SSHSettings


class ConnectionPool:
    """Hands out one open Connection per settings key; a dead one is reopened (and checked again) on use.

    Thread-safe: fan-out threads asking for the same host share a single handshake.
    """

    def __init__(self) -> None:
        self._connections: dict[tuple, Connection] = {}
        self._used: dict[tuple, float] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> "ConnectionPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, settings: SSHSettings, *, trust_hint: str = "bridge test --trust TARGET") -> Connection:
        """The pooled connection for `settings`, opened lazily (host key and auth checked on open).

        A connection already open has its host key checked against known_hosts again, so a key
        the user has since removed or replaced is refused on reuse too. Raises HostKeyError.
        """
        key = settings.key()
        with self._lock:
            connection = self._connections.get(key)
            if connection is None:
                connection = self._connections[key] = Connection(settings, trust_hint=trust_hint)
            self._used[key] = time.monotonic()
        if connection.is_open:
            _recheck_host_key(connection)
        return connection

    def close_idle(self, idle: float) -> int:
        """Close connections unused for `idle` seconds; returns how many stay."""
        now = time.monotonic()
        with self._lock:
            stale = [k for k, used in self._used.items() if now - used > idle]
            for key in stale:
                self._connections.pop(key).close()
                del self._used[key]
            return len(self._connections)

    def close(self) -> None:
        """Close every connection."""
        with self._lock:
            for connection in self._connections.values():
                connection.close()
            self._connections.clear()
            self._used.clear()


def _recheck_host_key(connection: Connection) -> None:
    """known_hosts may have changed since the handshake: verify the live key again, close on refusal."""
    server_key = connection.transport.get_remote_server_key()
    try:
        hostkeys.verify(connection.settings.known_hosts_name, server_key.get_name(), server_key.asbytes(),
                        connection.trust_hint)
    except Exception:
        connection.close()
        raise
