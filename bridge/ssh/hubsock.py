"""The byte stream of a hub:// remote: a socket whose other end is the agent's sshd, through the hub.

The SSH layer runs its normal handshake, host-key check and authentication over it, so the agent's
sshd (and `bridge guard` behind it) stays the boundary and the host key is verified end to end.
Under the hood: one WebSocket to the hub per connection (the hub splices it to a data connection
the agent dials for it), spliced to a socketpair whose other end the SSH layer reads and writes.

Every hub WebSocket of the process lives on one event-loop thread. All of a connection's TLS reads
and writes then happen on that thread: OpenSSL does not allow one connection to be read and written
from two threads at once, and a reader thread beside a writer thread (websockets' sync client) now
and then lost the upgrade request when a proxy in front of the hub sent TLS session tickets
(tests/hub/test_nginx.py).
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
from typing import Any

from bridge import hublink
from bridge.errors import ConnectError
from bridge.ssh.settings import HubRoute

CLOSE_TIMEOUT = 2.0  # a hub that went away answers no closing handshake: do not hold the stream for it


def hub_socket(route: HubRoute, timeout: float) -> socket.socket:
    """A connected socket to `route.agent`'s sshd; raises ConnectError or AuthError (exit 255) with a next step."""
    hub = hublink.HubAddress(route.host, route.port)
    login = hublink.load_login(hub)
    ours, theirs = socket.socketpair()
    opened = asyncio.run_coroutine_threadsafe(_open(hub, login, route, timeout, ours), _loop())
    try:
        opened.result()
    except BaseException:
        opened.cancel()
        ours.close()
        theirs.close()
        raise
    return theirs


_running: tuple[int, asyncio.AbstractEventLoop] | None = None
_starting = threading.Lock()


def _loop() -> asyncio.AbstractEventLoop:
    """The process's hub event loop, started on first use (again in a forked child: threads do not fork)."""
    global _running
    with _starting:
        if _running is None or _running[0] != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="bridge-hub", daemon=True).start()
            _running = (os.getpid(), loop)
        return _running[1]


_streams: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks


async def _open(hub: hublink.HubAddress, login: hublink.Login, route: HubRoute, timeout: float,
                sock: socket.socket) -> None:
    """Open the WebSocket, check the pin, hand over the token, wait for `ready`, then splice it to `sock`."""
    ws = await _dial(hub, timeout)
    try:
        hublink.check_pin(ws.transport.get_extra_info("ssl_object"), login.fingerprint, hub)  # before the token
        await ws.send(json.dumps({"token": login.token, "agent": route.agent, "workspace": route.workspace}))
        await _await_ready(ws, hub, timeout)
        reader, writer = await asyncio.open_connection(sock=sock, limit=hublink.DATA_CHUNK)
    except BaseException:
        ws.transport.abort()  # a refused or failed stream: nothing more to say to the hub
        raise
    task = asyncio.create_task(_carry(ws, reader, writer))
    _streams.add(task)
    task.add_done_callback(_streams.discard)


async def _dial(hub: hublink.HubAddress, timeout: float) -> Any:
    """The WebSocket to the hub's /ws/connect within `timeout`, or ConnectError naming the hop that was silent."""
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.exceptions import InvalidHandshake, InvalidURI

    secured = False

    class Watched(ClientConnection):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:  # once TLS is up
            nonlocal secured
            secured = True
            super().connection_made(transport)

    try:
        return await connect(hub.url("/ws/connect"), ssl=hublink.client_context(), server_hostname=hub.host,
                             open_timeout=timeout, close_timeout=CLOSE_TIMEOUT, max_size=hublink.MAX_MESSAGE,
                             compression=None, user_agent_header="bridge", create_connection=Watched)
    except (OSError, EOFError, TimeoutError, InvalidHandshake, InvalidURI) as e:
        hop = "to the WebSocket upgrade" if secured else "to the TLS handshake"
        silent = isinstance(e, TimeoutError) and e.errno is None  # our open_timeout, not the kernel's ETIMEDOUT
        cause = f"no answer {hop} within {timeout:g}s" if silent else getattr(e, "strerror", None) or e
        raise ConnectError(f"cannot connect to hub {hub.display()}: {cause}",
                           hint="check the hub address in the hub:// URL; is `bridge hub serve` running?") from e


async def _await_ready(ws: Any, hub: hublink.HubAddress, timeout: float) -> None:
    """The hub's `ready` (the agent opened its side), or its refusal as one line."""
    from websockets.exceptions import ConnectionClosed

    try:
        reply = await asyncio.wait_for(ws.recv(), timeout + 10)  # the hub itself waits up to 10 s for the agent
    except ConnectionClosed as e:
        close = e.rcvd
        raise hublink.refusal(close.code if close else None, close.reason if close else "", hub) from e
    except asyncio.TimeoutError as e:
        raise ConnectError(f"hub {hub.display()} did not answer within {timeout + 10:g}s") from e
    if not isinstance(reply, str) or json.loads(reply).get("type") != "ready":
        raise ConnectError(f"hub {hub.display()} sent something unexpected", hint="is that a bridge hub?")


async def _carry(ws: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The stream until either end closes; then both close, so the SSH layer reads its end's EOF."""
    try:
        await hublink.splice_stream(*hublink.client_ends(ws), reader, writer)
    finally:
        writer.close()
        await ws.close()
