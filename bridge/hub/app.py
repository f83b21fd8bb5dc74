"""The hub's ASGI app: agent control and data WebSockets, the client stream endpoint, the HTTP API.

Built with Starlette (served by uvicorn, see server.py). Each client stream is its own pair of
WebSockets (client→hub, agent→hub), spliced by the hub: every stream then has its own TCP
connections and so its own flow control, and a stalled reader only stalls its own stream.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.hub.audit import HubAudit
from bridge.hub.hostpin import pin_host_key
from bridge.hub.live import STREAM_OPEN_TIMEOUT, AgentSession, Live, received_bytes, workspace_folders
from bridge.hub.store import Store
from bridge.hub.tokens import Signer, TokenRefused, TokenSpent, UserClaims
from bridge.hublink import (CLOSE_BAD_REQUEST, CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED, CLOSE_UNAVAILABLE,
                            public_key_pem)

FIRST_MESSAGE_TIMEOUT = 10.0
QUIET_CLOSE_WAIT = 0.5  # seconds the hub waits on a silent agent's closing handshake
REVOCATION_POLL = 0.25  # seconds: `bridge hub revoke` takes effect on live connections within this


class BadMessage(Exception):
    """A peer sent something that is not the JSON message expected here."""


@dataclass
class Hub:
    """What the app's handlers share: state on disk, the signer, the audit log and the live connections."""

    store: Store
    signer: Signer
    audit: HubAudit
    live: Live
    ping_interval: float
    ssh_key: Path  # the hub's own SSH key, for API runs (granted on servers with `bridge keys add`)


def build_app(hub: Hub) -> Any:
    """The ASGI application: the agents' and the CLI's WebSockets, then Starlette (API, web page, lifespan)."""
    from starlette.applications import Starlette

    from bridge.hub import api, web

    app = Starlette(routes=[*api.routes(hub), *web.routes(hub)], lifespan=lambda app: _lifespan(hub))
    app.state.hub = hub
    return _Sockets(hub, app)


class _Sockets:
    """The agents' and the CLI's WebSockets go straight to their handlers; everything else to Starlette.

    A hub holds an agent's control connection for as long as the agent is up, a thousand of them at once:
    through Starlette's middleware and router each one kept a dozen more coroutine frames, a second
    WebSocket object and their closures alive (measured with tracemalloc in bench/bench_hub.py's swarm).
    None of those layers does anything for these sockets: they carry no cookies, path parameters or
    HTTP errors, and an exception reaches uvicorn's log either way.
    """

    def __init__(self, hub: Hub, app: Any) -> None:
        self.hub, self.app = hub, app
        self.sockets = {"/ws/agent": agent_control, "/ws/stream": agent_stream, "/ws/connect": client_stream}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        handler = self.sockets.get(scope["path"]) if scope["type"] == "websocket" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        from starlette.websockets import WebSocket

        scope["headers"] = ()  # nothing here reads them, and the server keeps the scope as long as the socket
        await handler(self.hub, WebSocket(scope, receive, send))


class _lifespan:
    """Starts the revocation watcher with the server and stops it with it."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> None:
        self.task = asyncio.create_task(_watch_revocations(self.hub))

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None:
            self.task.cancel()


async def _watch_revocations(hub: Hub) -> None:
    """Poll the store for names revoked by `bridge hub revoke` (another process) and close their connections."""
    since = time.time()
    while True:
        await asyncio.sleep(REVOCATION_POLL)
        for name, at in await asyncio.to_thread(hub.store.revoked_since, since):
            since = max(since, at)
            closed = await hub.live.revoke(name)
            hub.audit.record(user=name, action="hub.revoke", reason=f"{closed} live connection(s) closed")


# -- agents ---------------------------------------------------------------------------------------

async def agent_control(hub: Hub, ws: Any) -> None:
    """An agent's control connection: hello (enrolment or its own token), then heartbeats until it ends."""
    from starlette.websockets import WebSocketDisconnect

    await ws.accept()
    session = await _hello(hub, ws)
    if session is None:
        return
    await hub.live.attach(session)
    try:
        await ws.send_json({"type": "welcome", "agent": session.name, "ping_interval": hub.ping_interval})
        hub.audit.record(user=session.name, action="agent.connect", agent=session.name, source=_peer(ws))
        await _control_loop(session, hub.ping_interval)
    except WebSocketDisconnect:
        pass  # it gave up waiting for our welcome (a busy hub): it dials again, and may
    finally:
        await hub.live.detach(session)


async def _hello(hub: Hub, ws: Any) -> AgentSession | None:
    """The session an agent's hello opens (its host key pinned), or None after refusing it.

    Its own function so that the hello, its token and key, is not kept for the life of the connection.
    """
    try:
        hello = await _first_json(ws)
        name = await asyncio.to_thread(_authenticate_agent, hub, hello)
    except (BadMessage, TokenRefused) as e:
        await _refuse(hub, ws, e, action="agent.connect")
        return None
    await asyncio.to_thread(pin_host_key, name, hello.get("host_key"), replace="enrol" in hello)
    return AgentSession(name, ws, version=str(hello.get("version", "")),
                        capabilities=tuple(str(c) for c in hello.get("capabilities") or ()),
                        ssh_user=str(hello.get("ssh_user") or ""), workspaces=workspace_folders(hello))


def _authenticate_agent(hub: Hub, hello: dict) -> str:
    """The agent's name: an enrolment spends its token and registers the agent's key; else its own token."""
    if hello.get("type") != "hello":
        raise BadMessage("expected a hello message")
    if "enrol" in hello:
        key = str(hello.get("key", ""))
        try:
            public = public_key_pem(key.encode())
        except Exception as e:  # joserfc raises several types for a key it cannot read
            raise BadMessage("the agent's key is not an Ed25519 key") from e
        try:
            name = hub.signer.check_enrolment(str(hello["enrol"]))
        except TokenSpent as spent:
            # the agent enrolled but never saw our welcome (it timed out while the hub was busy): if its key,
            # proven by the token it signed, is the one on file, this is that agent coming back
            try:
                return hub.signer.check_agent(str(hello.get("auth", "")))
            except TokenRefused:
                raise spent from None
        hub.store.enrol(name, public)
        return name
    return hub.signer.check_agent(str(hello.get("auth", "")))


async def _control_loop(session: AgentSession, ping_interval: float) -> None:
    """Heartbeats (with the agent's measured RTT) until the agent goes; a malformed message ends it.

    The agent reports every ping interval; two intervals without a word mean a silent cut (no FIN,
    no RST), and the session ends then, whatever the server's own WebSocket close timeout would wait.
    """
    while await _heartbeat(session, 2 * ping_interval + 0.5):
        pass


async def _heartbeat(session: AgentSession, within: float) -> bool:
    """Take the agent's next message, if it comes `within` seconds; False when the session is over.

    One call per message, so that no message stays referenced while the next is awaited.
    """
    try:
        async with asyncio.timeout(within):  # no task per wait, as wait_for makes on 3.11
            message = await session.ws.receive()
    except TimeoutError:
        await _close_quietly(session.ws, CLOSE_UNAVAILABLE, "no heartbeat")
        return False
    if message["type"] == "websocket.disconnect":
        return False
    try:
        data = json.loads(message.get("text") or "")
    except ValueError:
        await session.ws.close(code=CLOSE_BAD_REQUEST, reason="malformed message")
        return False
    if isinstance(data, dict) and data.get("type") == "status":
        session.last_heartbeat = time.time()
        rtt = data.get("rtt_ms")
        session.rtt_ms = float(rtt) if isinstance(rtt, (int, float)) else None
    return True


async def _close_quietly(ws: Any, code: int, reason: str) -> None:
    """Send the close frame, but wait no longer than a moment for an answer a silent peer never gives.

    Awaited, not left to a task: once the handler returns the server drops the socket, and a close
    written after that is lost.
    """
    try:
        async with asyncio.timeout(QUIET_CLOSE_WAIT):
            await ws.close(code=code, reason=reason)
    except Exception:  # the peer is gone, or did not answer in time: the frame was written, or cannot be
        pass


async def agent_stream(hub: Hub, ws: Any) -> None:
    """An agent's data connection for one stream the hub asked for; spliced to the waiting client."""
    await ws.accept()
    try:
        first = await _first_json(ws)
        name = await asyncio.to_thread(hub.signer.check_agent, str(first.get("auth", "")))
    except (BadMessage, TokenRefused) as e:
        await _refuse(hub, ws, e, action="agent.stream")
        return
    pending = hub.live.claim(str(first.get("stream", "")), name)
    if pending is None:
        await ws.close(code=CLOSE_BAD_REQUEST, reason="no such stream")
        return
    hub.live.carry(pending, ws)
    try:
        pending.ready.set_result(ws)
        await pending.done
    finally:
        hub.live.drop(pending, ws)


# -- clients --------------------------------------------------------------------------------------

async def client_stream(hub: Hub, ws: Any) -> None:
    """A client's byte stream to an agent's sshd: token and role checked here, then spliced to the agent."""
    await ws.accept()
    try:
        first = await _first_json(ws)
        user = await asyncio.to_thread(hub.signer.check_user, str(first.get("token", "")))
    except (BadMessage, TokenRefused) as e:
        await _refuse(hub, ws, e, action="hub.connect")
        return
    agent, workspace = str(first.get("agent", "")), first.get("workspace")
    refusal = may_connect(user, workspace)
    hub.audit.record(user=user.name, action="hub.connect", agent=agent, workspace=workspace,
                     decision="refused" if refusal else "allowed", reason=refusal, source=_peer(ws))
    if refusal:
        await ws.close(code=CLOSE_FORBIDDEN, reason=refusal)
        return
    hub.live.track(user.name, ws)
    try:
        await _splice_to_agent(hub, ws, agent)
    finally:
        hub.live.untrack(user.name, ws)


def may_connect(user: UserClaims, workspace: object) -> str | None:
    """Why `user` may not open an SSH stream for `workspace`, or None: sshd and `bridge guard` decide the rest."""
    from bridge.security.policy import BUILTIN_ROLES, load_policy

    roles = load_policy().roles if user.role not in BUILTIN_ROLES else BUILTIN_ROLES
    if user.role not in roles:
        return f"role `{user.role}` is not defined at the hub"
    if user.workspaces and workspace not in user.workspaces:
        return f"workspace `{workspace}` is not one of {', '.join(user.workspaces)}"
    return None


async def _splice_to_agent(hub: Hub, ws: Any, agent: str) -> None:
    try:
        sid, pending = await hub.live.request_stream(agent)
    except LookupError:
        await ws.close(code=CLOSE_UNAVAILABLE, reason=f"agent `{agent}` is not connected")
        return
    try:
        agent_ws = await asyncio.wait_for(pending.ready, STREAM_OPEN_TIMEOUT)
    except asyncio.TimeoutError:
        hub.live.pending.pop(sid, None)
        await ws.close(code=CLOSE_UNAVAILABLE, reason=f"agent `{agent}` did not open the stream in {STREAM_OPEN_TIMEOUT:g}s; its log says why")
        return
    await ws.send_json({"type": "ready"})
    try:
        await splice(ws, agent_ws)
    finally:
        pending.done.set_result(None)


async def splice(a: Any, b: Any) -> None:
    """Copy binary messages both ways until either side ends, then close both.

    Each send waits for the peer's socket to drain, so a slow reader holds back only this stream's
    sender (TCP backpressure), and at most one message per direction is held here.
    """
    tasks = [asyncio.create_task(_copy(a, b)), asyncio.create_task(_copy(b, a))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for ws in (a, b):
            try:
                await ws.close()
            except Exception:  # already closed by the peer
                pass


async def _copy(src: Any, dst: Any) -> None:
    while (data := await received_bytes(src)) is not None:
        await dst.send_bytes(data)


# -- helpers --------------------------------------------------------------------------------------

async def _first_json(ws: Any) -> dict:
    """The peer's first message as a JSON object, within FIRST_MESSAGE_TIMEOUT; raises BadMessage."""
    try:
        async with asyncio.timeout(FIRST_MESSAGE_TIMEOUT):
            message = await ws.receive()
    except TimeoutError as e:
        raise BadMessage("no hello within 10 s") from e
    try:
        data = json.loads(message.get("text") or message.get("bytes") or b"")
    except ValueError as e:
        raise BadMessage("malformed message") from e
    if not isinstance(data, dict):
        raise BadMessage("malformed message")
    return data


async def _refuse(hub: Hub, ws: Any, error: Exception, *, action: str) -> None:
    """Close with the reason (never the token) and record the refusal."""
    code = CLOSE_UNAUTHORIZED if isinstance(error, TokenRefused) else CLOSE_BAD_REQUEST
    reason = str(error)[:120]  # a close reason must fit a control frame (123 bytes)
    hub.audit.record(user="?", action=action, decision="refused", reason=reason, source=_peer(ws))
    await _close_quietly(ws, code, reason)


def _peer(ws: Any) -> str | None:
    client = getattr(ws, "client", None)
    return f"{client.host}:{client.port}" if client else None
