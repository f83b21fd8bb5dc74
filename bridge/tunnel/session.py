"""One tunnel connection: open it through the SSH layer, ask for every forward, answer for its health.

paramiko's global requests have no timeout (they wait while the transport lives), so every request
here runs under a watchdog that closes the transport when the relay does not answer in time: a
silent death then surfaces as a closed transport instead of a hang.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from bridge.errors import ConnectError
from bridge.tunnel.forwards import Forward
from bridge.tunnel.pipe import Log, Router

if TYPE_CHECKING:
    import paramiko

    from bridge.ssh.connection import Connection
    from bridge.ssh.settings import SSHSettings

# OpenSSH answers any unknown global request with REQUEST_FAILURE: a reply is all a heartbeat needs.
HEARTBEAT_REQUEST = "keepalive@openssh.com"


# Why a port stays taken after a silent cut, and the fix, for the refused-forward hint and README. Nothing
# bridge can do over its login checks these: `sshd -T` needs root and reads the default config only,
# a tunnel key is usually restricted to forwarding, and the relay's own probes never show while our
# heartbeats keep the session busy. Measured (tests/tunnel/test_faults.py, bench_tunnel): OpenSSH 9.2
# sends client-alive probes only while a session is otherwise idle, so clients that keep connecting to
# the stale port hold it until the relay's TCP retransmissions give up (net.ipv4.tcp_retries2).
RELAY_SETTINGS_HINT = ("if this follows a cut link, the relay still holds the port for the dead session: give its "
                       "sshd `ClientAliveInterval 15` and `ClientAliveCountMax 3` (bridge cannot check them over "
                       "its login); while clients keep connecting to that port sshd sends no probes and only the "
                       "relay's net.ipv4.tcp_retries2 ends it (15: about 15 min; 8: about 100 s). Otherwise free "
                       "the port on the relay or allow forwarding there (AllowTcpForwarding)")


class Session:
    """An authenticated connection to the relay; each forward is asked for (and re-asked for) separately."""

    def __init__(self, settings: "SSHSettings", forwards: tuple[Forward, ...], log: Log,
                 trust_hint: str = "bridge test --trust RELAY") -> None:
        self.settings = settings
        self.forwards = forwards
        self._log = log
        self._trust_hint = trust_hint
        self._conn: Connection | None = None
        self._router = Router(forwards, log)
        self.granted: list[Forward] = []

    def open(self) -> "Session":
        """Connect and authenticate; raises ConnectError, AuthError or HostKeyError."""
        from bridge.ssh.connection import Connection
        from bridge.ssh.slim_import import slim_paramiko_import

        slim_paramiko_import()
        self._conn = Connection(self.settings, trust_hint=self._trust_hint)
        with self._lost_while("setting up the tunnel"):
            self._conn.open()
        return self

    def request(self, forward: Forward) -> str | None:
        """Ask the relay for `forward`: None when granted, else why it refused; ConnectError if the link died."""
        import paramiko

        if not self.alive:
            raise ConnectError(f"{self.settings.describe()}: the connection closed before asking for port "
                               f"{forward.relay_port}")
        transport = self._conn.transport  # type: ignore[union-attr]
        try:
            with self._lost_while(f"asking for port {forward.relay_port}"), \
                    _deadline(transport, self.settings.connect_timeout):
                transport.request_port_forward(forward.bind, forward.relay_port, handler=self._router)
            self.granted.append(forward)
        except paramiko.SSHException:  # the link is up (else _lost_while raised): the relay said no
            return (f"the relay refused to forward {forward.bind}:{forward.relay_port}: the port is in use there "
                    f"or forwarding is not allowed")
        return None

    @contextmanager
    def _lost_while(self, doing: str) -> Iterator[None]:
        """Turn a link that broke during `doing` into ConnectError (closing the session), so the loop retries."""
        import paramiko

        try:
            yield
        except (OSError, EOFError, paramiko.SSHException) as e:
            if isinstance(e, paramiko.SSHException) and self.alive:
                raise
            self.close()
            raise ConnectError(f"{self.settings.describe()}: connection lost while {doing}: "
                               f"{e or type(e).__name__}") from e
        except BaseException:
            self.close()
            raise

    def heartbeat(self, timeout: float) -> float | None:
        """Ask the relay for a reply; return the round trip in seconds, or None when it is dead (then closed)."""
        transport = self._conn.transport if self._conn and self._conn.is_open else None
        if transport is None:
            return None
        start = time.monotonic()
        with _deadline(transport, timeout):
            transport.global_request(HEARTBEAT_REQUEST, wait=True)
        return time.monotonic() - start if transport.is_active() else None

    @property
    def alive(self) -> bool:
        """Whether the transport still runs (False as soon as the relay closed it or a deadline fired)."""
        return self._conn is not None and self._conn.is_open

    def cancel_forwards(self, timeout: float = 2.0) -> None:
        """Tell the relay to free the ports now (a clean `down`), without waiting long on a dead link."""
        if not self.alive:
            return
        transport = self._conn.transport  # type: ignore[union-attr]
        with _deadline(transport, timeout):
            for forward in self.granted:
                transport.cancel_port_forward(forward.bind, forward.relay_port)

    def close(self) -> None:
        """Drop the connection; the relay frees the forwarded ports when it sees it go."""
        if self._conn is not None:
            self._conn.close()


@contextmanager
def _deadline(transport: paramiko.Transport, seconds: float) -> Iterator[None]:
    """Close `transport` if the block has not finished after `seconds`: the relay is gone."""
    timer = threading.Timer(seconds, transport.close)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
