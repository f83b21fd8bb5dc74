"""One agent's link to its hub: the control connection, and a data connection per stream the hub asks for.

asyncio with the `websockets` client. The hub's certificate is checked against the pin right
after the TLS handshake, before the first message (which carries the token) is sent. Proxies:
`websockets` tunnels through `https_proxy`/`HTTPS_PROXY` with HTTP CONNECT by itself.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Callable, NamedTuple

from bridge import __version__ as VERSION
from bridge.agent.state import AgentStatus, Enrolment
from bridge.errors import AuthError, BridgeError
from bridge.hublink import (CLOSE_FORBIDDEN, CLOSE_REPLACED, CLOSE_UNAUTHORIZED, DATA_CHUNK, MAX_MESSAGE,
                            check_pin, client_context, client_ends, public_key_pem, sign_agent_token,
                            splice_stream)

CAPABILITIES = ("ssh",)
OPEN_TIMEOUT = 30.0  # a hub busy with a storm of returning agents answers late: waiting wastes less than retrying


class Plan(NamedTuple):
    """What an agent keeps up: which hub as whom, where its sshd is, how often it pings."""

    enrolment: Enrolment
    key: bytes  # the agent's private key (PEM)
    folder: Path
    ssh_host: str = "127.0.0.1"
    ssh_port: int = 22
    ssh_user: str = ""  # the account the hub's own API runs log in as (its key granted by `bridge keys add`)
    ping_interval: float = 20.0
    backoff_cap: float = 30.0
    enrol_token: str | None = None  # only until the hub accepted it
    workspaces: tuple[tuple[str, str], ...] = ()  # (name, remote path): where the hub's web terminals start


class Refused(BridgeError):
    """The hub refused this agent for good (revoked, token spent, replaced): retrying cannot help."""

    exit_code = AuthError.exit_code


async def dial(plan: Plan, path: str) -> Any:
    """An open WebSocket to the hub whose certificate matched the pin; raises ConnectError on a mismatch."""
    from websockets.asyncio.client import connect

    hub = plan.enrolment.hub
    ws = await connect(hub.url(path), ssl=client_context(), server_hostname=hub.host, open_timeout=OPEN_TIMEOUT,
                       ping_interval=plan.ping_interval, ping_timeout=plan.ping_interval, max_size=MAX_MESSAGE,
                       # a dead peer answers no closing handshake: waiting the default 10 s for it would let
                       # a silent cut go unnoticed for far longer than the two ping intervals promised
                       close_timeout=min(plan.ping_interval, 2.0),
                       compression=None, user_agent_header=f"bridge-agent/{VERSION}")
    try:
        check_pin(ws.transport.get_extra_info("ssl_object"), plan.enrolment.fingerprint, hub)
    except BridgeError:
        await ws.close()
        raise
    return ws


async def control(plan: Plan, status: AgentStatus, changed: Callable[[], None], log: Callable[[str], None]) -> str:
    """Hold one control connection until it ends; returns why it ended. Raises Refused when retrying is futile.

    `log` gets one line per stream that could not be opened (the hub only tells its client "did not open").
    """
    ws = await dial(plan, "/ws/agent")
    streams: set[asyncio.Task] = set()
    try:
        await ws.send(json.dumps({**_hello(plan), "ssh_user": plan.ssh_user,
                                  "host_key": await asyncio.to_thread(_local_host_key, plan)}))
        welcome = json.loads(await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT))
        if welcome.get("type") != "welcome":
            return "the hub did not welcome us"
        status.connected()
        changed()
        beat = asyncio.create_task(_heartbeat(ws, plan.ping_interval, status, changed))
        try:
            async for message in ws:
                _on_message(plan, message, streams, status, log)
        finally:
            beat.cancel()
    except Exception as e:
        _raise_if_refused(ws, e)
        raise
    finally:
        for task in streams:
            task.cancel()
        await ws.close()
    _raise_if_refused(ws, None)
    return _close_reason(ws)


def _hello(plan: Plan) -> dict:
    hello = {"type": "hello", "agent": plan.enrolment.agent, "version": VERSION, "capabilities": list(CAPABILITIES),
             "workspaces": dict(plan.workspaces)}
    auth = sign_agent_token(plan.key, plan.enrolment.agent)
    if plan.enrol_token:  # `auth` too: if the hub took the token but its welcome never came, the key proves us
        return {**hello, "enrol": plan.enrol_token, "key": public_key_pem(plan.key), "auth": auth}
    return {**hello, "auth": auth}


def _local_host_key(plan: Plan) -> list[str] | None:
    """[type, base64] of the local sshd's host key, which the hub pins for its own API runs; None if sshd is down."""
    import base64

    from bridge.ssh.connection import probe_host_key
    from bridge.ssh.settings import SSHSettings

    settings = SSHSettings(host=plan.ssh_host, hostname=plan.ssh_host, port=plan.ssh_port, user=plan.ssh_user,
                           connect_timeout=5.0)
    try:
        _, key_type, blob = probe_host_key(settings)
    except BridgeError:
        return None
    return [key_type, base64.b64encode(blob).decode()]


def _raise_if_refused(ws: Any, error: Exception | None) -> None:
    """A close the hub meant as final (bad token, revoked, replaced) becomes Refused."""
    from websockets.exceptions import ConnectionClosed

    close = getattr(error, "rcvd", None) if isinstance(error, ConnectionClosed) else ws.protocol.close_rcvd
    if close is None:
        return
    if close.code in (CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN):
        raise Refused(f"the hub refused this agent: {close.reason}",
                      hint="on the hub: `bridge hub token agent NAME`; here: `bridge agent up --hub wss://HUB --token T`")
    if close.code == CLOSE_REPLACED:
        raise Refused("a newer connection of this agent replaced this one",
                      hint="is another `bridge agent up` running with this agent's key (a cloned machine)?")


def _close_reason(ws: Any) -> str:
    close = ws.protocol.close_rcvd  # the sans-I/O protocol's record of the peer's close frame
    return f"the hub closed the connection ({close.code} {close.reason})".rstrip() if close else "connection lost"


def _on_message(plan: Plan, message: Any, streams: set[asyncio.Task], status: AgentStatus,
                log: Callable[[str], None]) -> None:
    """The hub's requests: `open` a stream (anything else is ignored, for newer hubs)."""
    try:
        data = json.loads(message)
    except (TypeError, ValueError):
        return
    if isinstance(data, dict) and data.get("type") == "open" and isinstance(data.get("stream"), str):
        task = asyncio.create_task(carry(plan, data["stream"], status, log))
        streams.add(task)
        task.add_done_callback(streams.discard)


async def _heartbeat(ws: Any, interval: float, status: AgentStatus, changed: Callable[[], None]) -> None:
    """Tell the hub our measured round trip every interval (websockets' own pings measure it)."""
    while True:
        await asyncio.sleep(interval)
        status.heartbeat(ws.latency)
        changed()
        await ws.send(json.dumps({"type": "status", "rtt_ms": status.rtt_ms, "streams": status.streams}))


async def carry(plan: Plan, sid: str, status: AgentStatus, log: Callable[[str], None]) -> None:
    """One stream: a data connection to the hub spliced to a TCP connection to the local sshd.

    A stream that cannot be opened is logged with the hop that failed: the hub only waits, then tells
    its client that the agent did not open the stream.
    """
    try:  # limit: the reader buffers up to two chunks before it holds sshd back, so reads fill a message
        reader, writer = await asyncio.open_connection(plan.ssh_host, plan.ssh_port, limit=DATA_CHUNK)
    except OSError as e:
        log(f"stream not opened: cannot reach sshd at {plan.ssh_host}:{plan.ssh_port}: {e.strerror or e}")
        return
    status.streams += 1
    try:
        ws = await _dial_stream(plan, sid, log)
        if ws is not None:
            try:
                await splice_stream(*client_ends(ws), reader, writer)
            finally:
                await ws.close()
    except (OSError, asyncio.TimeoutError):
        pass  # this stream ends; the SSH client on the other side sees its connection close
    except Exception as e:  # websockets.ConnectionClosed and friends: the same
        if not _is_closed(e):
            raise
    finally:
        status.streams -= 1
        writer.close()


async def _dial_stream(plan: Plan, sid: str, log: Callable[[str], None]) -> Any:
    """The data connection for stream `sid`, announced to the hub; None (and a log line) if it cannot be had."""
    try:
        ws = await dial(plan, "/ws/stream")
    except BridgeError as e:
        log(f"stream not opened: {e.message}")
        return None
    except Exception as e:  # OSError, timeout, websockets' InvalidHandshake...: the hub did not take the dial
        log(f"stream not opened: data connection to hub {plan.enrolment.hub.display()} failed: "
            f"{getattr(e, 'strerror', None) or e or type(e).__name__}")
        return None
    await ws.send(json.dumps({"stream": sid, "auth": sign_agent_token(plan.key, plan.enrolment.agent)}))
    return ws


def _is_closed(error: Exception) -> bool:
    from websockets.exceptions import ConnectionClosed

    return isinstance(error, ConnectionClosed)
