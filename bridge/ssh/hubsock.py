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
        ws.close()
        raise
    ours, theirs = socket.socketpair()
    _bridge(ws, ours)
    return theirs


def _open(hub: hublink.HubAddress, timeout: float) -> Any:
    from websockets.exceptions import InvalidHandshake, InvalidURI
    from websockets.sync.client import connect

    try:
        return connect(hub.url("/ws/connect"), ssl=hublink.client_context(), server_hostname=hub.host,
                       open_timeout=timeout, max_size=hublink.MAX_MESSAGE, compression=None,
                       user_agent_header="bridge", legacy=True)  # legacy: a plain connection, not a context manager
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as e:
        raise ConnectError(f"cannot connect to hub {hub.display()}: {getattr(e, 'strerror', None) or e}",
                           hint="check the hub address in the hub:// URL; is `bridge hub serve` running?") from e


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
