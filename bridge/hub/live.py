"""The hub's live connections: one session per agent (a newer one replaces it at once), and open streams.

Everything here runs on the server's one event loop, so plain dicts need no lock.
"""
from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from bridge.hublink import CLOSE_FORBIDDEN, CLOSE_REPLACED, CLOSE_UNAVAILABLE

STREAM_OPEN_TIMEOUT = 10.0


@dataclass(slots=True)
class AgentSession:
    """An agent's control connection and what it told us."""

    name: str
    ws: Any  # starlette WebSocket
    version: str = ""
    capabilities: tuple[str, ...] = ()
    connected_at: float = field(default_factory=time.time)
    last_heartbeat: float = field(default_factory=time.time)
    rtt_ms: float | None = None
    ssh_user: str = ""  # the account the hub's own API runs log in as
    streams: set[Any] | None = None  # the data connections its agent opened at its request (a set from the first)
    workspaces: dict[str, str] = field(default_factory=dict)  # name -> its folder on the server, as the agent says

    def describe(self) -> dict:
        """The row `GET /api/v1/agents` shows."""
        return {"name": self.name, "online": True, "version": self.version, "capabilities": list(self.capabilities),
                "connected_since": self.connected_at, "last_heartbeat": self.last_heartbeat, "rtt_ms": self.rtt_ms,
                "workspaces": sorted(self.workspaces)}


def workspace_folders(hello: dict) -> dict[str, str]:
    """An agent hello's `workspaces` (name -> absolute folder on its server); entries of another shape are left out."""
    given = hello.get("workspaces")
    if not isinstance(given, dict):
        return {}
    return {name: path for name, path in given.items()
            if isinstance(name, str) and isinstance(path, str) and path.startswith("/")}


@dataclass
class Pending:
    """A stream the hub asked an agent to open; the agent's data connection fills `ready`."""

    session: AgentSession  # the control connection it was asked over: the stream ends with it
    ready: asyncio.Future
    done: asyncio.Future


class Live:
    """Agent sessions by name, streams waiting for their agent side, and every open connection by owner."""

    def __init__(self) -> None:
        self.agents: dict[str, AgentSession] = {}
        self.pending: dict[str, Pending] = {}
        self.connections: dict[str, set[Any]] = {}  # owner (agent or user name) -> its open WebSockets
        self.tasks: set[asyncio.Task] = set()  # the hub's own stream splices, held so they are not collected

    async def attach(self, session: AgentSession) -> None:
        """Make `session` the agent's one session; the previous one is closed now, not when it times out."""
        old = self.agents.get(session.name)
        self.agents[session.name] = session
        if old is not None:
            await _close(old.ws, CLOSE_REPLACED, "replaced by a newer connection of this agent")

    async def detach(self, session: AgentSession) -> None:
        """Forget `session` unless a newer one already took its place, and close the streams asked over it.

        The agent ends those when its control connection goes, so they are dead or soon will be; and
        after a silent cut nothing else would tell their clients, who would wait on them until their own
        keepalive gave up.
        """
        if self.agents.get(session.name) is session:
            del self.agents[session.name]
        for ws in session.streams or ():
            await _close(ws, CLOSE_UNAVAILABLE, "the agent's control connection ended")

    def carry(self, pending: Pending, ws: Any) -> None:
        """`ws`, the agent's data connection for `pending`, belongs to the session it was asked over."""
        session = pending.session
        if session.streams is None:
            session.streams = set()
        session.streams.add(ws)
        self.track(session.name, ws)

    def drop(self, pending: Pending, ws: Any) -> None:
        """`ws` has ended."""
        if pending.session.streams is not None:
            pending.session.streams.discard(ws)
        self.untrack(pending.session.name, ws)

    def track(self, owner: str, ws: Any) -> None:
        self.connections.setdefault(owner, set()).add(ws)

    def untrack(self, owner: str, ws: Any) -> None:
        owned = self.connections.get(owner)
        if owned is not None:
            owned.discard(ws)
            if not owned:
                del self.connections[owner]

    async def request_stream(self, agent: str) -> tuple[str, Pending]:
        """Ask `agent` over its control connection to dial a data connection; LookupError when it is offline."""
        session = self.agents.get(agent)
        if session is None:
            raise LookupError(agent)
        loop = asyncio.get_running_loop()
        sid = secrets.token_urlsafe(16)
        pending = self.pending[sid] = Pending(session, loop.create_future(), loop.create_future())
        await session.ws.send_json({"type": "open", "stream": sid})
        return sid, pending

    def claim(self, sid: str, agent: str) -> Pending | None:
        """The pending stream `sid`, if it was asked of `agent` (another agent cannot take it)."""
        pending = self.pending.get(sid)
        if pending is None or pending.session.name != agent:
            return None
        return self.pending.pop(sid)

    async def revoke(self, name: str) -> int:
        """Close every connection `name` owns (its agent session too); returns how many."""
        owned = list(self.connections.pop(name, ()))
        session = self.agents.pop(name, None)
        if session is not None and session.ws not in owned:
            owned.append(session.ws)
        for ws in owned:
            await _close(ws, CLOSE_FORBIDDEN, "revoked")
        return len(owned)


async def _close(ws: Any, code: int, reason: str) -> None:
    """Close a WebSocket that may be closed already."""
    try:
        await ws.close(code=code, reason=reason)
    except Exception:  # already closed or its transport gone: nothing left to close
        pass


async def received_bytes(ws: Any) -> bytes | None:
    """A Starlette WebSocket's next binary message; None once it disconnected or sent text (not this protocol)."""
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        return None
    return message.get("bytes")
