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

from bridge.errors import BridgeError, ConnectError
from bridge.tunnel.forwards import Forward
from bridge.tunnel.pipe import Log, Router

if TYPE_CHECKING:
    import paramiko

    from bridge.ssh.connection import Connection
    from bridge.ssh.settings import SSHSettings

# OpenSSH answers any unknown global request with REQUEST_FAILURE: a reply is all a heartbeat needs.
HEARTBEAT_REQUEST = "keepalive@openssh.com"


class ForwardRefused(BridgeError):
    """The relay said no to a `tcpip-forward`: the port is taken (often by our own stale session) or forbidden."""

    default_hint = ("if it persists, check that nothing else listens on that port on the relay and that its "
                    "sshd allows AllowTcpForwarding")


class Session:
    """An authenticated connection to the relay with every forward granted."""

    def __init__(self, settings: "SSHSettings", forwards: tuple[Forward, ...], log: Log,
                 trust_hint: str = "bridge test --trust RELAY") -> None:
        self.settings = settings
        self.forwards = forwards
        self._log = log
        self._trust_hint = trust_hint
        self._conn: Connection | None = None

    def open(self) -> "Session":
        """Connect and request each forward; raises ConnectError, AuthError, HostKeyError or ForwardRefused."""
        from bridge.ssh.connection import Connection
        from bridge.ssh.slim_import import slim_paramiko_import

        slim_paramiko_import()
        import paramiko

        self._conn = Connection(self.settings, trust_hint=self._trust_hint)
        try:
            self._conn.open()
            router = Router(self.forwards, self._log)
            for forward in self.forwards:
                self._request(forward, router)
        except (OSError, EOFError, paramiko.SSHException) as e:  # the link broke mid-setup: retry, never crash
            self.close()
            raise ConnectError(f"{self.settings.describe()}: connection lost while setting up the tunnel: "
                               f"{e or type(e).__name__}") from e
        except BaseException:
            self.close()
            raise
        return self

    def _request(self, forward: Forward, router: Router) -> None:
        import paramiko

        transport = self._conn.transport  # type: ignore[union-attr]
        try:
            with _deadline(transport, self.settings.connect_timeout):
                transport.request_port_forward(forward.bind, forward.relay_port, handler=router)
        except paramiko.SSHException as e:
            if not transport.is_active():
                raise ConnectError(f"{self.settings.describe()}: the relay did not answer the forward request "
                                   f"for port {forward.relay_port}") from e
            raise ForwardRefused(f"the relay refused to forward {forward.bind}:{forward.relay_port}: the port is "
                                 f"in use there (a stale session of this tunnel holds it until the relay notices "
                                 f"it is dead) or forwarding is not allowed") from e

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
            for forward in self.forwards:
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
