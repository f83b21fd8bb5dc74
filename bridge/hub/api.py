"""The hub's HTTP API (`/api/v1/…`, OpenAPI at /openapi.json, docs at /docs), for scripts and the web page.

Requests carry a user token as `Authorization: Bearer …`; every request is checked against the
user's role and workspaces here, at the hub, before anything reaches a server.
"""
from __future__ import annotations

import asyncio
import threading
from functools import partial
from typing import TYPE_CHECKING, Any

from bridge.errors import BridgeError
from bridge.hub.tokens import TokenRefused, UserClaims

if TYPE_CHECKING:
    from bridge.hub.app import Hub

AUDIT_LIMIT = 1000


def routes(hub: "Hub") -> list:
    """The API's routes, bound to `hub`."""
    from starlette.routing import Route

    return [Route("/api/v1/agents", partial(list_agents, hub), methods=["GET"]),
            Route("/api/v1/agents/{agent}/exec", partial(exec_run, hub), methods=["POST"]),
            Route("/api/v1/agents/{agent}/exec/stream", partial(exec_stream, hub), methods=["POST"]),
            Route("/api/v1/audit", partial(read_audit, hub), methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"], include_in_schema=False),
            Route("/docs", docs, methods=["GET"], include_in_schema=False)]


async def list_agents(hub: "Hub", request: Any) -> Any:
    """Every enrolled agent: online, last heartbeat, RTT, version.
    ---
    responses:
      200: {description: "{agents: [{name, online, version, capabilities, connected_since, last_heartbeat, rtt_ms}]}"}
      401: {description: no or bad bearer token}
    """
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
    """The hub's audit entries (the last `limit`, default 100), for a role holding `audit`.
    ---
    parameters: [{name: limit, in: query, schema: {type: integer}}]
    responses:
      200: {description: "{entries: [...]}, each line of the hash chain as written"}
      403: {description: the role lacks `audit`}
    """
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


async def exec_run(hub: "Hub", request: Any) -> Any:
    """Run a command on the agent's server and answer when it ends.
    ---
    requestBody:
      content: {application/json: {schema: {type: object, required: [command], properties: {
        command: {type: string}, workspace: {type: string}, timeout: {type: number}, sandbox: {type: boolean},
        env: {type: object, additionalProperties: {type: string}}, cwd: {type: string}}}}}
    responses:
      200: {description: "{exit_code, stdout, stderr, duration, status, truncated}"}
      400: {description: malformed request}
      403: {description: refused by the user's role or workspaces (nothing was sent to the server)}
      404: {description: the agent is not connected}
      502: {description: the server could not be reached or refused the hub's key}
    """
    from starlette.responses import JSONResponse

    from bridge.hub import runs

    checked = await _checked_run(hub, request)
    if not isinstance(checked, tuple):
        return checked
    user, agent, run = checked
    out, err = runs.CappedSink(), runs.CappedSink()
    loop = asyncio.get_running_loop()
    try:
        result = await asyncio.to_thread(runs.run, hub, loop, agent, run, out, err)
    except BridgeError as e:
        _audit_run(hub, user, agent, run, None, None, e.message)
        return JSONResponse({"error": e.message, "hint": e.hint}, status_code=runs.error_status(e))
    _audit_run(hub, user, agent, run, result.exit_code, result.duration, None)
    return JSONResponse(runs.answer(result, out, err))


async def exec_stream(hub: "Hub", request: Any) -> Any:
    """Run a command and stream NDJSON: `{"stdout": "…"}` / `{"stderr": "…"}` lines as output arrives, then
    one `{"exit_code", "duration", "status"}` line. Same request body and refusals as `exec`.
    ---
    responses:
      200: {description: NDJSON lines, application/x-ndjson}
    """
    from starlette.responses import StreamingResponse

    checked = await _checked_run(hub, request)
    if not isinstance(checked, tuple):
        return checked
    user, agent, run = checked
    return StreamingResponse(_ndjson(hub, user, agent, run), media_type="application/x-ndjson")


async def _ndjson(hub: "Hub", user: UserClaims, agent: str, run: Any) -> Any:
    """Output lines as they come; a client that goes away closes the run's channel (the server ends it)."""
    import json

    from bridge.hub import runs

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize=64)  # bounded: a slow client holds back the SSH channel
    gone = threading.Event()

    def sink(name: str) -> Any:
        def put(data: bytes) -> None:
            future = asyncio.run_coroutine_threadsafe(queue.put({name: data.decode("utf-8", "replace")}), loop)
            while not gone.is_set():
                try:
                    return future.result(0.5)
                except TimeoutError:
                    continue
            future.cancel()
            raise BrokenPipeError("the API client went away")
        return put

    async def produce() -> None:
        try:
            result = await asyncio.to_thread(runs.run, hub, loop, agent, run, sink("stdout"), sink("stderr"))
            end = {"exit_code": result.exit_code, "duration": round(result.duration, 4), "status": result.status}
            _audit_run(hub, user, agent, run, result.exit_code, result.duration, None)
        except (BridgeError, BrokenPipeError) as e:
            end = {"error": str(e), "status": "unreachable"}
            _audit_run(hub, user, agent, run, None, None, str(e))
        await queue.put(end)
        await queue.put(None)

    task = asyncio.create_task(produce())
    try:
        while (item := await queue.get()) is not None:
            yield json.dumps(item) + "\n"
    finally:
        gone.set()
        if not task.done():
            task.cancel()


async def _checked_run(hub: "Hub", request: Any) -> Any:
    """(user, agent, RunRequest) when the run may go ahead; else the refusal response (and its audit line)."""
    from starlette.responses import JSONResponse

    from bridge.hub import runs

    user = await _user(hub, request)
    if isinstance(user, Exception):
        return _unauthorized(user)
    agent = request.path_params["agent"]
    try:
        run = runs.parse_request(await request.json())
    except ValueError as e:  # JSON that does not parse, or fields of the wrong kind
        return JSONResponse({"error": f"bad request: {e}"}, status_code=400)
    refused = runs.refusal(user, run)
    if refused:
        hub.audit.record(user=user.name, action="hub.exec", agent=agent, workspace=run.workspace,
                         command=run.command, decision="refused", reason=refused)
        return JSONResponse({"error": refused, "status": "denied"}, status_code=403)
    if agent not in hub.live.agents:
        return JSONResponse({"error": f"agent `{agent}` is not connected"}, status_code=404)
    return user, agent, run


def _audit_run(hub: "Hub", user: UserClaims, agent: str, run: Any, code: int | None, duration: float | None,
               error: str | None) -> None:
    hub.audit.record(user=user.name, action="hub.exec", agent=agent, workspace=run.workspace, command=run.command,
                     exit_code=code, duration=duration, reason=error)


async def openapi(request: Any) -> Any:
    """The OpenAPI document (JSON), built from the routes' docstrings."""
    from starlette.responses import JSONResponse

    return JSONResponse(schema(request.app.routes))


def schema(routes: list) -> dict:
    """OpenAPI 3 for `routes`: each endpoint's first docstring line is its summary, the YAML after `---` the rest."""
    import inspect

    import yaml

    paths: dict[str, dict] = {}
    for route in routes:
        if not getattr(route, "include_in_schema", False) or not getattr(route, "methods", None):
            continue
        endpoint = getattr(route.endpoint, "func", route.endpoint)  # our endpoints are partials bound to the hub
        summary, _, spec = (inspect.getdoc(endpoint) or "").partition("---")
        for method in sorted(route.methods - {"HEAD"}):
            paths.setdefault(route.path, {})[method.lower()] = {"summary": summary.strip().split("\n")[0],
                                                                "description": summary.strip(),
                                                                **(yaml.safe_load(spec) or {})}
    return {"openapi": "3.0.0", "info": {"title": "bridge hub", "version": "1"}, "paths": paths,
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}]}


async def docs(request: Any) -> Any:
    """A plain page listing the API from its OpenAPI document (no script, nothing fetched from elsewhere)."""
    import html

    from starlette.responses import HTMLResponse

    items = []
    for path, methods in schema(request.app.routes)["paths"].items():
        for method, spec in methods.items():
            summary = html.escape(spec["summary"])
            items.append(f"<li><code>{method.upper()} {html.escape(path)}</code> — {summary}</li>")
    body = ("<!doctype html><title>bridge hub API</title><h1>bridge hub API</h1>"
            "<p>Send <code>Authorization: Bearer &lt;user token&gt;</code>. The machine-readable document is "
            f"<a href=\"/openapi.json\">/openapi.json</a>.</p><ul>{''.join(items)}</ul>")
    return HTMLResponse(body)
