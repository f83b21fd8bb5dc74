"""The byte stream of a hub:// remote: a socket whose other end is the agent's sshd, through the hub.

The SSH layer runs its normal handshake, host-key check and authentication over it, so the agent's
sshd (and `bridge guard` behind it) stays the boundary and the host key is verified end to end.
Under the hood: one WebSocket to the hub per connection (the hub splices it to a data connection
the agent dials for it), and a socketpair whose far end two threads copy to and from that WebSocket.
"""
from __future__ import annotations

import json
import socket
import threading
from typing import Any

from bridge import hublink
from bridge.errors import ConnectError
from bridge.ssh.settings import HubRoute


def hub_socket(route: HubRoute, timeout: float) -> socket.socket:
    """A connected socket to `route.agent`'s sshd; raises ConnectError or AuthError (exit 255) with a next step."""
    hub = hublink.HubAddress(route.host, route.port)
    login = hublink.load_login(hub)
    ws = _open(hub, timeout)
    try:
        hublink.check_pin(ws.socket, login.fingerprint, hub)  # before the token is sent
        ws.send(json.dumps({"token": login.token, "agent": route.agent, "workspace": route.workspace}))
        _await_ready(ws, hub, timeout)
    except BaseException:
        _shutdown(ws.socket)  # first: close() would wait on a reader stuck in a TLS read (see _open)
        ws.close()
        raise
    ours, theirs = socket.socketpair()
    _bridge(ws, ours)
    return theirs


def _open(hub: hublink.HubAddress, timeout: float) -> Any:
    """The WebSocket to the hub's /ws/connect, opened within `timeout` (+ a grace) or ConnectError.

    websockets' sync client can hang past its own open_timeout: its reader thread may be inside a
    blocking TLS read (a hub gone silent after the TLS handshake) when the handshake times out, and
    closing the socket does not wake that read, so connect() waits on the thread forever. A watchdog
    shuts the socket down at `timeout`, before the library's own timeout (later, on purpose) closes
    it; a shutdown wakes the read. tests/hub/test_faults.py has the hub.
    """
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
    from websockets.sync.client import ClientConnection, connect

    sockets: list[socket.socket] = []

    class Watched(ClientConnection):
        def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
            sockets.append(sock)
            super().__init__(sock, *args, **kwargs)

    fired = threading.Event()

    def expire() -> None:  # before the library's own (later) timeout closes the socket out of our reach
        fired.set()
        for sock in sockets:
            _shutdown(sock)

    watchdog = threading.Timer(timeout, expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        return connect(hub.url("/ws/connect"), ssl=hublink.client_context(), server_hostname=hub.host,
                       open_timeout=timeout + 5, max_size=hublink.MAX_MESSAGE, compression=None,
                       user_agent_header="bridge", create_connection=Watched,
                       legacy=True)  # legacy: a plain connection, not a context manager
    except (OSError, EOFError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed) as e:
        # the library hands a socket to Watched once its TLS handshake is done: which hop was silent
        hop = "to the WebSocket upgrade" if sockets else "to the TLS handshake"
        cause = f"no answer {hop} within {timeout:g}s" if fired.is_set() else getattr(e, "strerror", None) or e
        raise ConnectError(f"cannot connect to hub {hub.display()}: {cause}",
                           hint="check the hub address in the hub:// URL; is `bridge hub serve` running?") from e
    finally:
        watchdog.cancel()


def _await_ready(ws: Any, hub: hublink.HubAddress, timeout: float) -> None:
    """The hub's `ready` (the agent opened its side), or its refusal as one line."""
    from websockets.exceptions import ConnectionClosed

    try:
        reply = ws.recv(timeout=timeout + 10)  # the hub itself waits up to 10 s for the agent
    except ConnectionClosed as e:
        close = e.rcvd
        raise hublink.refusal(close.code if close else None, close.reason if close else "", hub) from e
    except TimeoutError as e:
        raise ConnectError(f"hub {hub.display()} did not answer within {timeout + 10:g}s") from e
    if not isinstance(reply, str) or json.loads(reply).get("type") != "ready":
        raise ConnectError(f"hub {hub.display()} sent something unexpected", hint="is that a bridge hub?")


def _bridge(ws: Any, sock: socket.socket) -> None:
    """Copy bytes both ways in two daemon threads; either side ending closes both.

    Each copy blocks on its sink (sendall, or the WebSocket's send), so a reader that stops reading
    stops this stream's sender through TCP backpressure instead of filling memory.
    """

    def upstream() -> None:
        try:
            while data := sock.recv(hublink.DATA_CHUNK):
                ws.send(data)
        except Exception:  # the WebSocket closed (ConnectionClosed) or the socket did: the stream is over
            pass
        finally:
            ws.close()
            down.join()
            sock.close()

    def downstream() -> None:
        try:
            for message in ws:
                if isinstance(message, str):
                    break
                sock.sendall(message)
        except Exception:  # the same: either end closing ends the stream
            pass
        finally:
            _shutdown(sock)

    down = threading.Thread(target=downstream, name="bridge-hub-down", daemon=True)
    down.start()
    threading.Thread(target=upstream, name="bridge-hub-up", daemon=True).start()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the SSH side
