"""The hub's HTTP API (`/api/v1/…`, OpenAPI at /openapi.json, docs at /docs), for scripts and the web page.

Requests carry a user token as `Authorization: Bearer …`; every request is checked against the
user's role and workspaces here, at the hub, before anything reaches a server.
"""
from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING, Any

from bridge.hub.tokens import TokenRefused, UserClaims

if TYPE_CHECKING:
    from bridge.hub.app import Hub

AUDIT_LIMIT = 1000


def routes(hub: "Hub") -> list:
    """The API's routes, bound to `hub`."""
    from starlette.routing import Route

    return [Route("/api/v1/agents", partial(list_agents, hub), methods=["GET"]),
            Route("/api/v1/audit", partial(read_audit, hub), methods=["GET"])]


async def list_agents(hub: "Hub", request: Any) -> Any:
    """Every enrolled agent: online, last heartbeat, RTT, version."""
    from starlette.responses import JSONResponse

    user = await _user(hub, request)
    if isinstance(user, Exception):
        return _unauthorized(user)
    rows = []
    for agent in await asyncio.to_thread(hub.store.agents):
        session = hub.live.agents.get(agent.name)
        rows.append(session.describe() if session else {"name": agent.name, "online": False})
    return JSONResponse({"agents": rows})


async def read_audit(hub: "Hub", request: Any) -> Any:
    """The hub's audit entries (the last `limit`, default 100), for a role holding `audit`."""
    from starlette.responses import JSONResponse

    user = await _user(hub, request)
    if isinstance(user, Exception):
        return _unauthorized(user)
    if not _role(user).may("audit"):
        hub.audit.record(user=user.name, action="hub.audit", decision="refused", reason="role lacks audit")
        return JSONResponse({"error": f"role `{user.role}` may not read the audit"}, status_code=403)
    limit = min(_int(request.query_params.get("limit"), 100), AUDIT_LIMIT)
    return JSONResponse({"entries": await asyncio.to_thread(hub.audit.entries, limit)})


async def _user(hub: "Hub", request: Any) -> UserClaims | TokenRefused:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return TokenRefused("no bearer token", hint="send `Authorization: Bearer <user token>`")
    try:
        return await asyncio.to_thread(hub.signer.check_user, token.strip())
    except TokenRefused as e:
        return e


def _unauthorized(error: Exception) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": str(error)}, status_code=401, headers={"WWW-Authenticate": "Bearer"})


def _role(user: UserClaims) -> Any:
    """The user's Role from the hub's policy (built-ins without one); an unknown role holds nothing."""
    from bridge.security.policy import Role, load_policy

    return load_policy().roles.get(user.role) or Role(user.role, frozenset())


def _int(text: str | None, default: int) -> int:
    return int(text) if text and text.isdigit() else default
