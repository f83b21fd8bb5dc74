"""The wire shared by the hub, its agents and its clients: certificate pins, token claims, first messages.

Shared layer (imports no feature): the hub (bridge/hub), the agent (bridge/agent) and the SSH layer's
hub socket (bridge/ssh/hubsock.py) all speak it. Every peer of the hub checks the certificate's
SHA-256 fingerprint right after the TLS handshake and before it sends a token, so a token never
reaches a hub it was not meant for; that is why tokens travel in the first WebSocket message and
not in an Authorization header of the upgrade request (the HTTP API takes the header: it is for
curl and scripts, which verify TLS their own way).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, NamedTuple

if TYPE_CHECKING:
    import asyncio

from bridge import paths
from bridge.errors import AuthError, ConnectError, UsageError

AUDIENCE = "bridge-hub"
ALGORITHM = "Ed25519"  # EdDSA over Ed25519, the fully specified name (RFC 9864) for what JWTs called "EdDSA"
DEFAULT_PORT = 443
MAX_MESSAGE = 1 << 20  # the largest WebSocket message any side accepts (bytes)
# Stream data travels in messages of up to this much: 64 KiB spent ~20% more CPU per byte in the CLI's
# hub socket (the binding hop, bench/bench_hub.py throughput), and a stream still holds at most a few.
DATA_CHUNK = 256 << 10
# WebSocket close codes the hub uses (4000-4999 are the application's)
CLOSE_REPLACED = 4000  # a newer connection for the same agent took over
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403  # refused, or revoked while connected
CLOSE_UNAVAILABLE = 4404  # the agent is not connected


class HubAddress(NamedTuple):
    """Where a hub listens; `key()` names its pin and login files."""

    host: str
    port: int = DEFAULT_PORT

    def url(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"wss://{host}:{self.port}{path}"

    def display(self) -> str:
        return f"{self.host}:{self.port}"

    def key(self) -> str:
        return f"{self.host.replace(':', '_')}_{self.port}"


def parse_hub(text: str) -> HubAddress:
    """`wss://HOST[:PORT]`, `HOST[:PORT]` or `https://…` into a HubAddress; raises UsageError otherwise."""
    rest = text.strip()
    for scheme in ("wss://", "https://"):
        if rest.startswith(scheme):
            rest = rest[len(scheme):]
    rest = rest.rstrip("/")
    host, port = rest, DEFAULT_PORT
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = _port(tail[1:], text) if tail.startswith(":") else DEFAULT_PORT
    elif rest.count(":") == 1:
        host, tail = rest.split(":")
        port = _port(tail, text)
    if not host or "/" in host or " " in host:
        raise UsageError(f"cannot read `{text}` as a hub address", hint="write wss://HOST[:PORT]")
    return HubAddress(host, port)


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UsageError(f"bad port in hub address `{whole}`", hint="use a port from 1 to 65535")
    return int(text)


def fingerprint(der: bytes) -> str:
    """`sha256:` and the hex SHA-256 of a certificate's DER bytes: what is printed, pinned and compared."""
    return "sha256:" + hashlib.sha256(der).hexdigest()


def client_context() -> ssl.SSLContext:
    """TLS 1.3 only; the chain is not checked by a CA: the pinned fingerprint is checked by `check_pin`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def check_pin(ssl_object: ssl.SSLObject | ssl.SSLSocket | None, pinned: str, hub: HubAddress) -> None:
    """Refuse (ConnectError) a hub whose certificate is not the pinned one, before any token is sent."""
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    offered = fingerprint(der) if der else "no certificate"
    if offered != pinned:
        raise ConnectError(f"hub {hub.display()} offers certificate {offered}, not the pinned {pinned}: refusing",
                           hint="if the hub really has a new certificate, log in again with a token made by it")


def token_claims(token: str) -> dict:
    """A token's claims, read WITHOUT checking its signature: only to learn the name and hub pin it carries.

    The hub verifies every token it is handed; a peer reads these fields only to know whom to dial.
    Raises UsageError when `token` is not a JWT.
    """
    try:
        body = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (IndexError, ValueError) as e:
        raise UsageError("that is not a bridge hub token",
                         hint="copy the whole token `bridge hub token …` printed on the hub") from e
    if not isinstance(claims, dict):
        raise UsageError("that is not a bridge hub token", hint="copy the whole token again")
    return claims


Receive = Callable[[], Awaitable["bytes | None"]]  # the next binary message; None once the WebSocket ended
Send = Callable[[bytes], Awaitable[Any]]  # waits until the WebSocket's transport took the bytes


def client_ends(ws: Any) -> tuple[Receive, Send]:
    """A `websockets` client connection as the two ends `splice_stream` takes (a text frame ends the stream)."""
    from websockets.exceptions import ConnectionClosed

    async def receive() -> bytes | None:
        try:
            message = await ws.recv()
        except ConnectionClosed:
            return None
        return message if isinstance(message, bytes) else None

    return receive, ws.send


async def splice_stream(receive: Receive, send: Send, reader: "asyncio.StreamReader",
                        writer: "asyncio.StreamWriter") -> None:
    """Bytes between a WebSocket and a byte stream until either ends; every stream of the hub runs through here.

    Each direction waits for its sink (the WebSocket's send, the writer's drain), so a reader that stops
    reading holds back only this stream's sender, through TCP backpressure, and memory stays bounded.
    The caller closes the WebSocket and the writer.
    """
    import asyncio

    async def up() -> None:
        while data := await reader.read(DATA_CHUNK):
            await send(data)

    async def down() -> None:
        while (data := await receive()) is not None:
            writer.write(data)
            await writer.drain()

    tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        # a closed peer ends a direction with an error: that is how streams end, so it is collected, not raised
        await asyncio.gather(*tasks, return_exceptions=True)


class Login(NamedTuple):
    """What `bridge hub login` keeps for one hub: the user token and the certificate pin."""

    token: str
    fingerprint: str


def login_path(hub: HubAddress) -> Path:
    """`$XDG_CONFIG_HOME/bridge/hub/<host>_<port>.json` (0600)."""
    return paths.config_dir() / "hub" / f"{hub.key()}.json"


def save_login(hub: HubAddress, login: Login) -> Path:
    """Keep the token and pin 0600 (written through a 0600 file descriptor, never world-readable)."""
    path = login_path(hub)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(login._asdict(), f)
    os.chmod(path, 0o600)
    return path


def load_login(hub: HubAddress) -> Login:
    """The token (BRIDGE_HUB_TOKEN first) and pin for `hub`; raises AuthError with the command that logs in."""
    env_token = os.environ.get("BRIDGE_HUB_TOKEN")
    saved = _saved_login(hub)
    token = env_token or (saved.token if saved else "")
    if not token:
        raise AuthError(f"no token for hub {hub.display()}",
                        hint=f"run `bridge hub login {hub.display()} --token T`, or set BRIDGE_HUB_TOKEN")
    pin = saved.fingerprint if saved else str(token_claims(token).get("fp", ""))
    if not pin:
        raise AuthError(f"no pinned certificate for hub {hub.display()}",
                        hint=f"run `bridge hub login {hub.display()} --token T`")
    return Login(token, pin)


def _saved_login(hub: HubAddress) -> Login | None:
    try:
        data = json.loads(login_path(hub).read_text())
        return Login(str(data["token"]), str(data["fingerprint"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def refusal(code: int | None, reason: str, hub: HubAddress) -> ConnectError:
    """The one-line error for a hub that closed the connection with `code` and `reason`."""
    hints = {CLOSE_UNAUTHORIZED: "get a fresh token from the hub's operator (`bridge hub token …`)",
             CLOSE_FORBIDDEN: "your token was revoked or your role does not allow this; ask the hub's operator",
             CLOSE_UNAVAILABLE: "the agent is offline: `bridge agent status` on the server tells why"}
    cls = AuthError if code in (CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN) else ConnectError
    return cls(f"hub {hub.display()}: {reason or 'connection closed'}", hint=hints.get(code or 0))


def new_agent_key() -> bytes:
    """A fresh Ed25519 private key (PEM) an agent registers at enrolment and signs its tokens with."""
    from joserfc.jwk import OKPKey

    return OKPKey.generate_key("Ed25519").as_pem(private=True)


def public_key_pem(private_pem: bytes) -> str:
    """The public half of an agent key, as the hub stores it."""
    from joserfc.jwk import OKPKey

    return OKPKey.import_key(private_pem).as_pem(private=False).decode()


def sign_agent_token(private_pem: bytes, name: str, ttl: float = 60.0) -> str:
    """A short-lived token an agent signs for itself with its registered key."""
    import secrets
    import time

    from joserfc import jwt
    from joserfc.jwk import OKPKey

    now = int(time.time())
    claims = {"typ": "agent", "sub": name, "aud": AUDIENCE, "iat": now, "exp": now + int(ttl),
              "jti": secrets.token_urlsafe(8)}
    return jwt.encode({"alg": ALGORITHM}, claims, OKPKey.import_key(private_pem), algorithms=[ALGORITHM])
