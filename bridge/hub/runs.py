"""The hub's own runs on a server (`POST /api/v1/agents/{agent}/exec`): SSH through the agent, as the hub.

The hub logs in to the agent's sshd with its own key (`<state>/ssh.key`), which the server's
operator granted a role with `bridge keys add hub --role ROLE --key '…'`: the server's `bridge guard`
still decides every run, after the hub checked the user's role and workspaces. The agent stays a
byte pipe that can run nothing by itself, and the agent's host key is checked (pinned at enrolment).
"""
from __future__ import annotations

import asyncio
import os
import re
import shlex
import socket
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from bridge.errors import BridgeError, ConnectError
from bridge.hublink import DATA_CHUNK, splice_stream
from bridge.hub.hostpin import known_hosts_name
from bridge.hub.live import STREAM_OPEN_TIMEOUT, received_bytes
from bridge.hub.tokens import UserClaims
from bridge.result import ExecResult

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.serialization.ssh import SSHPrivateKeyTypes

    from bridge.hub.app import Hub
    from bridge.runners import Runner
    from bridge.ssh.connection import Connection

OUTPUT_CAP = 1 << 20  # bytes of stdout and of stderr kept for a JSON answer; the rest is counted as truncated
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RunRequest(NamedTuple):
    """One API exec: a shell command line, for a workspace, with limits and environment."""

    command: str
    workspace: str | None = None
    timeout: float = 0.0
    sandbox: bool = False
    env: dict[str, str] = {}
    cwd: str | None = None


def parse_request(body: object) -> RunRequest:
    """A RunRequest from JSON; raises ValueError naming the bad field."""
    if not isinstance(body, dict) or not isinstance(body.get("command"), str) or not body["command"].strip():
        raise ValueError("`command` must be a non-empty string")
    env = body.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(v, str) and _ENV_NAME.match(str(k)) for k, v in env.items()):
        raise ValueError("`env` must map variable names to strings")
    timeout = body.get("timeout") or 0
    if not isinstance(timeout, (int, float)) or timeout < 0:
        raise ValueError("`timeout` must be seconds (0: none)")
    workspace, cwd = body.get("workspace"), body.get("cwd")
    if workspace is not None and not isinstance(workspace, str) or cwd is not None and not isinstance(cwd, str):
        raise ValueError("`workspace` and `cwd` must be strings")
    return RunRequest(body["command"], workspace, float(timeout), bool(body.get("sandbox")), dict(env), cwd)


def refusal(user: UserClaims, request: RunRequest) -> str | None:
    """Why the hub refuses this run for `user` before anything reaches the server, or None."""
    from bridge.security.policy import Grant, check_command, load_policy

    role = load_policy().roles.get(user.role)
    if role is None:
        return f"role `{user.role}` is not defined at the hub"
    if user.workspaces and request.workspace not in user.workspaces:
        return f"workspace `{request.workspace}` is not one of {', '.join(user.workspaces)}"
    if role.may("sandbox_only") and not request.sandbox:
        return f"role `{role.name}` may run commands only in the sandbox"
    decision = check_command(Grant(user.name, role, user.workspaces or role.workspaces), request.command)
    return None if decision.allowed else decision.reason or decision.rule


def script(request: RunRequest) -> str:
    """The sh script the server runs: environment, folder, then the user's command line as given."""
    parts = [f"export {name}={shlex.quote(value)}" for name, value in request.env.items()]
    if request.cwd:
        parts.append(f"cd {shlex.quote(request.cwd)}")
    return "\n".join([*parts, request.command])


def ssh_key(state: Path) -> tuple[Path, str]:
    """The hub's SSH key (Ed25519, OpenSSH format, 0600, made on first use) and its public line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    path = state / "ssh.key"
    if not path.is_file():
        private: SSHPrivateKeyTypes = ed25519.Ed25519PrivateKey.generate()
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    private = serialization.load_ssh_private_key(path.read_bytes(), None)
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return path, public.decode() + " bridge-hub"


def run(hub: "Hub", loop: asyncio.AbstractEventLoop, agent: str, request: RunRequest,
        on_stdout: Callable[[bytes], None], on_stderr: Callable[[bytes], None]) -> ExecResult:
    """Run `request` on `agent`'s server (in a worker thread); raises ConnectError/AuthError when it cannot."""
    from bridge.config import Remote
    from bridge.runners import SSHRunner

    with SSHRunner(Remote(name=agent, url=f"ssh://{agent}/"), "", hub_connection(hub, loop, agent)) as runner:
        if request.sandbox:
            return _sandboxed(runner, agent, request, on_stdout, on_stderr)
        return runner.run_stream(script(request), on_stdout=on_stdout, on_stderr=on_stderr,
                                 timeout=request.timeout or None, capture=False)


def hub_connection(hub: "Hub", loop: asyncio.AbstractEventLoop, agent: str) -> "Connection":
    """An unopened SSH connection to `agent`'s sshd as the hub's own key, through the agent's stream.

    Used by API runs and web terminals alike; raises ConnectError when the agent is offline.
    """
    from bridge.ssh.connection import Connection
    from bridge.ssh.settings import SSHSettings

    session = hub.live.agents.get(agent)
    if session is None:
        raise ConnectError(f"agent `{agent}` is not connected")
    settings = SSHSettings(host=agent, hostname=known_hosts_name(agent), port=22, user=session.ssh_user,
                           identities=(hub.ssh_key,), explicit_identity=True)
    opener = lambda: asyncio.run_coroutine_threadsafe(open_stream(hub, agent), loop).result(STREAM_OPEN_TIMEOUT + 5)  # noqa: E731
    return Connection(settings, trust_hint="re-enrol the agent (its host key is pinned at enrolment)", opener=opener)


def _sandboxed(runner: "Runner", agent: str, request: RunRequest, on_stdout: Callable[[bytes], None],
               on_stderr: Callable[[bytes], None]) -> ExecResult:
    """As `bridge exec --sandbox` does, through the execution core on this runner (the server's dockerd
    over its `open_stdio` pipes), with bridge.yaml's default limits. Raises SandboxError when the server
    has no engine or image (or refuses the command)."""
    from bridge.config import Config
    from bridge.exec.sandbox_link import run_on
    from bridge.exec.service import ExecRequest

    exec_request = ExecRequest(request.command, request.env, None, request.timeout or None)
    return run_on(runner, Config(), exec_request, None, on_stdout, on_stderr)


async def open_stream(hub: "Hub", agent: str) -> socket.socket:
    """A socket whose far end is `agent`'s sshd: a stream the agent dials, spliced to a socketpair here."""
    try:
        sid, pending = await hub.live.request_stream(agent)
    except LookupError as e:
        raise ConnectError(f"agent `{agent}` is not connected") from e
    try:
        agent_ws = await asyncio.wait_for(pending.ready, STREAM_OPEN_TIMEOUT)
    except asyncio.TimeoutError as e:
        hub.live.pending.pop(sid, None)
        raise ConnectError(f"agent `{agent}` did not open the stream") from e
    ours, theirs = socket.socketpair()
    task = asyncio.create_task(_splice_socket(agent_ws, ours, pending.done))
    hub.live.tasks.add(task)
    task.add_done_callback(hub.live.tasks.discard)
    return theirs


async def _splice_socket(ws: Any, sock: socket.socket, done: asyncio.Future) -> None:
    """Bytes between the agent's data WebSocket and our socketpair end."""
    reader, writer = await asyncio.open_connection(sock=sock, limit=DATA_CHUNK)
    try:
        await splice_stream(partial(received_bytes, ws), ws.send_bytes, reader, writer)
    finally:
        writer.close()
        done.set_result(None)


class CappedSink:
    """Keeps the first OUTPUT_CAP bytes of a stream and remembers whether more came."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.truncated = False

    def __call__(self, data: bytes) -> None:
        room = OUTPUT_CAP - self.size
        if len(data) > room:
            self.truncated = True
            data = data[:max(room, 0)]
        self.parts.append(data)
        self.size += len(data)

    def value(self) -> str:
        return b"".join(self.parts).decode("utf-8", "replace")


def answer(result: ExecResult, out: CappedSink, err: CappedSink) -> dict:
    """The JSON the API returns for a finished run."""
    truncated = out.truncated or err.truncated
    status = result.status if not truncated or result.timed_out else "output_truncated"
    return {"exit_code": result.exit_code, "stdout": out.value(), "stderr": err.value(),
            "duration": round(result.duration, 4), "status": status, "truncated": truncated}


def error_status(error: BridgeError) -> int:
    """The HTTP status for a run that could not start: 502 the server's side, 504 on a timeout."""
    return 504 if "timed out" in error.message else 502
