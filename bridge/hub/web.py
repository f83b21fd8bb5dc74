"""The web terminal's routes: the page at `/`, cookie sessions, the terminal WebSocket, recordings.

A browser cannot put an Authorization header on a WebSocket upgrade, so a user token is exchanged
once (POST body, never a URL) for a server-side session id in an HttpOnly, Secure, SameSite=Strict
cookie; every request re-checks the token behind it (expiry, revocation), and the WebSocket upgrade
checks the cookie and that its Origin is this hub (a page elsewhere cannot drive a terminal).
"""
from __future__ import annotations

import asyncio
import json
import secrets
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.errors import BridgeError
from bridge.hub.terminal import WINDOW, Spec, Terminals
from bridge.hub.tokens import TokenRefused, UserClaims

if TYPE_CHECKING:
    from bridge.hub.app import Hub

WEB_DIR = Path(__file__).resolve().parent / "web"
VENDOR_FILES = ("xterm.js", "xterm.css", "addon-fit.js")
COOKIE = "bridge_session"
SESSION_TTL = 8 * 3600.0
CLOSE_POLICY = 4403  # the role or workspace refuses a terminal
CLOSE_GONE = 4404  # no such session to reattach (ended, expired, or not this user's)
CLOSE_UNAVAILABLE = 4503
MAX_COLS, MAX_ROWS = 1000, 500
PAGE_MISSING = ("<!doctype html><title>bridge hub</title><p>The web terminal's files (xterm.js) are not installed "
                "with this bridge. Reinstall it with <code>pip install .</code> from a checkout, or run "
                "<code>python3 scripts/vendor-xterm.py</code> there; the HTTP API and agents work without them.")


class WebSessions:
    """Session id -> the user token it stands for, and when it expires; held in memory only."""

    def __init__(self) -> None:
        self.by_id: dict[str, tuple[str, float]] = {}

    def create(self, token: str) -> str:
        sid = secrets.token_urlsafe(32)
        self.by_id[sid] = (token, time.time() + SESSION_TTL)
        return sid

    def token(self, sid: str | None) -> str | None:
        """The token behind a live session id, else None (an expired one is forgotten)."""
        entry = self.by_id.get(sid or "")
        if entry is None:
            return None
        if entry[1] < time.time():
            del self.by_id[sid or ""]
            return None
        return entry[0]

    def drop(self, sid: str | None) -> None:
        self.by_id.pop(sid or "", None)


class Web:
    """The page's state at the hub: cookie sessions, live terminals, where recordings are kept."""

    def __init__(self, hub: "Hub") -> None:
        self.hub = hub
        self.sessions = WebSessions()
        self.recordings = hub.ssh_key.parent / "recordings"  # the hub's state dir holds its SSH key
        self.terminals = Terminals(hub, self.recordings)

    async def user(self, conn: Any) -> UserClaims | None:
        """The signed-in user of a request or WebSocket (token still valid, not revoked), else None."""
        token = self.sessions.token(conn.cookies.get(COOKIE))
        if token is None:
            return None
        try:
            return await asyncio.to_thread(self.hub.signer.check_user, token)
        except TokenRefused:
            self.sessions.drop(conn.cookies.get(COOKIE))
            return None


def routes(hub: "Hub") -> list:
    """The page's routes, bound to one Web state for `hub`."""
    from starlette.routing import Mount, Route, WebSocketRoute
    from starlette.staticfiles import StaticFiles

    web = Web(hub)
    return [Route("/", partial(page, web), methods=["GET"], include_in_schema=False),
            Route("/web/session", partial(sign_in, web), methods=["POST"], include_in_schema=False),
            Route("/web/session", partial(sign_out, web), methods=["DELETE"], include_in_schema=False),
            Route("/web/me", partial(me, web), methods=["GET"], include_in_schema=False),
            Route("/web/recordings", partial(list_recordings, web), methods=["GET"], include_in_schema=False),
            Route("/web/recordings/{name}", partial(recording, web), methods=["GET"], include_in_schema=False),
            WebSocketRoute("/ws/term", partial(terminal_socket, web)),
            Mount("/web/static", StaticFiles(directory=WEB_DIR, check_dir=False), name="static")]


def assets_present() -> bool:
    return all((WEB_DIR / "vendor" / name).is_file() for name in VENDOR_FILES)


async def page(web: Web, request: Any) -> Any:
    from starlette.responses import FileResponse, HTMLResponse

    if not assets_present():
        return HTMLResponse(PAGE_MISSING, status_code=503)
    return FileResponse(WEB_DIR / "index.html", headers=_page_headers())


def _page_headers() -> dict[str, str]:
    """Scripts and styles from this hub only; no framing by other sites."""
    # xterm.js sets inline styles (its DOM renderer's <style>): styles may be inline, scripts never
    return {"Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def same_origin(conn: Any) -> bool:
    """True when the request's Origin is this hub (what the browser connected to)."""
    origin, host = conn.headers.get("origin"), conn.headers.get("host")
    return bool(origin and host) and origin == f"https://{host}"


async def sign_in(web: Web, request: Any) -> Any:
    """Exchange a user token (JSON body) for a session cookie."""
    from starlette.responses import JSONResponse

    if not same_origin(request):
        return JSONResponse({"error": "sign in from the hub's own page"}, status_code=403)
    try:
        body = json.loads(await request.body() or b"{}")
        token = str(body["token"]).strip()
        user = await asyncio.to_thread(web.hub.signer.check_user, token)
    except TokenRefused as e:
        web.hub.audit.record(user="?", action="hub.web.signin", decision="refused", reason=str(e), source=_peer(request))
        return JSONResponse({"error": str(e), "hint": e.hint}, status_code=401)
    except (ValueError, KeyError, TypeError):
        return JSONResponse({"error": "send {\"token\": \"…\"}"}, status_code=400)
    web.hub.audit.record(user=user.name, action="hub.web.signin", source=_peer(request))
    response = JSONResponse({"user": user.name, "role": user.role})
    response.set_cookie(COOKIE, web.sessions.create(token), max_age=int(SESSION_TTL), path="/", secure=True,
                        httponly=True, samesite="strict")
    return response


async def sign_out(web: Web, request: Any) -> Any:
    from starlette.responses import JSONResponse

    web.sessions.drop(request.cookies.get(COOKIE))
    response = JSONResponse({})
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


def _role(user: UserClaims) -> Any:
    from bridge.hub.api import _role as role_of

    return role_of(user)


async def me(web: Web, request: Any) -> Any:
    """Who is signed in, what their role allows, and the agents they may open a terminal on."""
    from starlette.responses import JSONResponse

    user = await web.user(request)
    if user is None:
        return JSONResponse({"error": "not signed in"}, status_code=401)
    role = _role(user)
    agents = []
    for agent in await asyncio.to_thread(web.hub.store.agents):
        session = web.hub.live.agents.get(agent.name)
        agents.append(session.describe() if session else {"name": agent.name, "online": False})
    return JSONResponse({"user": user.name, "role": user.role, "workspaces": list(user.workspaces),
                         "shell": role.may("shell"), "exec": role.may("exec"), "agents": agents})


# -- the terminal WebSocket -----------------------------------------------------------------------

async def terminal_socket(web: Web, ws: Any) -> None:
    """Open or reattach a terminal: cookie and Origin checked before the upgrade is accepted."""
    if not same_origin(ws):
        web.hub.audit.record(user="?", action="hub.terminal", decision="refused", reason="foreign Origin",
                             source=_peer(ws))
        await ws.close(code=CLOSE_POLICY)  # before accept: the upgrade is answered 403
        return
    user = await web.user(ws)
    if user is None:
        await ws.close(code=CLOSE_POLICY)
        return
    await ws.accept()
    try:
        first = await asyncio.wait_for(ws.receive_json(), 10)
    except Exception:  # a timeout, a disconnect or not JSON: nothing was asked
        await _close(ws, 4400, "expected an open or attach message")
        return
    session = await _open_or_attach(web, ws, user, first if isinstance(first, dict) else {})
    if session is None:
        return
    await _serve(web, ws, session, _int(first.get("offset"), 0))


async def _open_or_attach(web: Web, ws: Any, user: UserClaims, first: dict) -> Any:
    """The session the message names (reattach) or a new one (open); None after closing `ws` with why."""
    if first.get("type") == "attach":
        session = web.terminals.get(str(first.get("session", "")), user)
        if session is None:
            await _close(ws, CLOSE_GONE, "that session has ended")
        return session
    try:
        spec = _spec(first)
    except ValueError as e:
        await _close(ws, 4400, str(e))
        return None
    refusal = terminal_refusal(user, spec)
    web.hub.audit.record(user=user.name, action="hub.terminal", agent=spec.agent, workspace=spec.workspace,
                         command=spec.command or "shell", decision="refused" if refusal else "allowed",
                         reason=refusal, source=_peer(ws))
    if refusal:
        await _close(ws, CLOSE_POLICY, refusal)
        return None
    try:
        return await web.terminals.open(user, spec)
    except BridgeError as e:
        await _close(ws, CLOSE_UNAVAILABLE, e.message)
        return None


def terminal_refusal(user: UserClaims, spec: Spec) -> str | None:
    """Why the hub refuses this terminal before anything reaches the server, or None (the guard decides next)."""
    from bridge.hub import runs
    from bridge.hub.app import may_connect

    role = _role(user)
    if spec.command is None:
        if not role.may("shell"):
            return f"role `{user.role}` has no terminal access"
        return may_connect(user, spec.workspace)
    if not role.may("exec"):
        return f"role `{user.role}` may not run commands"
    return runs.refusal(user, runs.RunRequest(spec.command, spec.workspace))


def _spec(message: dict) -> Spec:
    """A Spec from the browser's `open` message; raises ValueError naming the bad field."""
    if message.get("type") != "open" or not isinstance(message.get("agent"), str) or not message["agent"]:
        raise ValueError("`open` needs an agent")
    command, workspace = message.get("command") or None, message.get("workspace") or None
    if command is not None and not isinstance(command, str) or workspace is not None and not isinstance(workspace, str):
        raise ValueError("`command` and `workspace` must be strings")
    cols, rows = _size(message)
    return Spec(message["agent"], workspace, command, cols, rows)


def _size(message: dict) -> tuple[int, int]:
    return (min(max(_int(message.get("cols"), 80), 1), MAX_COLS), min(max(_int(message.get("rows"), 24), 1), MAX_ROWS))


async def _serve(web: Web, ws: Any, session: Any, offset: int) -> None:
    """Replay from `offset`, then keys in and output out until the socket or the shell ends."""
    start = web.terminals.attach(session, ws, offset)
    await ws.send_json({"type": "ready", "session": session.id, "offset": start, "window": WINDOW})
    pump = asyncio.create_task(session.pump(ws, start))
    try:
        await _read_browser(ws, session, pump)
    finally:
        pump.cancel()
        web.terminals.detach(session, ws)
        await _close(ws, 1000, "")


async def _read_browser(ws: Any, session: Any, pump: asyncio.Task) -> None:
    """Binary frames are keys; text frames are `resize`, `ack` and `hangup`; ends when either side does."""
    receive = asyncio.create_task(ws.receive())
    while True:
        done, _ = await asyncio.wait({receive, pump}, return_when=asyncio.FIRST_COMPLETED)
        if pump in done:
            receive.cancel()
            pump.exception()  # a send to a socket that went: nothing more to do (retrieved, not logged)
            return
        message = receive.result()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes") is not None:
            await session.send_input(message["bytes"])
        elif message.get("text"):
            await _control(session, message["text"])
        receive = asyncio.create_task(ws.receive())


async def _control(session: Any, text: str) -> None:
    try:
        message = json.loads(text)
    except ValueError:
        return
    if not isinstance(message, dict):
        return
    if message.get("type") == "ack":
        session.ack(_int(message.get("offset"), 0))
    elif message.get("type") == "resize":
        await session.resize(*_size(message))
    elif message.get("type") == "hangup":  # the person left the terminal: no reattach wanted
        session.close()


# -- recordings -----------------------------------------------------------------------------------

def _visible(user: UserClaims, header: dict) -> bool:
    """A user sees their own sessions; a role that manages keys (admin) sees everyone's."""
    owner = (header.get("bridge") or {}).get("user")
    return owner == user.name or _role(user).may("keys")


def _headers(folder: Path) -> list[tuple[Path, dict]]:
    """Every recording with its asciicast header, newest first (one being written or unreadable is left out)."""
    rows = [(path, _header_of(path)) for path in sorted(folder.glob("*.cast"), reverse=True)]
    return [(path, header) for path, header in rows if header is not None]


async def list_recordings(web: Web, request: Any) -> Any:
    """Past terminal sessions the user may see, newest first."""
    from starlette.responses import JSONResponse

    user = await web.user(request)
    if user is None:
        return JSONResponse({"error": "not signed in"}, status_code=401)
    rows = await asyncio.to_thread(_headers, web.recordings)
    return JSONResponse({"recordings": [
        {"name": path.name, "started": header.get("timestamp"), "command": header.get("command"),
         **(header.get("bridge") or {})} for path, header in rows if _visible(user, header)]})


async def recording(web: Web, request: Any) -> Any:
    """One recording's asciicast v2 text, for the page's player (or asciinema)."""
    from starlette.responses import FileResponse, JSONResponse

    user = await web.user(request)
    if user is None:
        return JSONResponse({"error": "not signed in"}, status_code=401)
    name = request.path_params["name"]
    path = web.recordings / name
    if "/" in name or not name.endswith(".cast") or not path.is_file():
        return JSONResponse({"error": "no such recording"}, status_code=404)
    header = (await asyncio.to_thread(_header_of, path)) or {}
    if not _visible(user, header):
        return JSONResponse({"error": "no such recording"}, status_code=404)
    return FileResponse(path, media_type="application/x-asciicast")


def _header_of(path: Path) -> dict | None:
    """A recording's first line, the asciicast header, or None."""
    try:
        with path.open(encoding="utf-8") as f:
            return json.loads(f.readline())
    except (OSError, ValueError):
        return None


async def _close(ws: Any, code: int, reason: str) -> None:
    try:
        await ws.close(code=code, reason=reason[:120])
    except Exception:  # the browser is gone already
        pass


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def _peer(conn: Any) -> str | None:
    client = getattr(conn, "client", None)
    return f"{client.host}:{client.port}" if client else None
