"""What an agent keeps on disk: its key, its enrolment (which hub, which pin, which name), its status."""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from bridge import paths
from bridge.errors import UsageError
from bridge.hublink import HubAddress
from bridge.statefile import load_json, save_json


def agent_dir(state: Path | None) -> Path:
    """`--state`, else `$XDG_STATE_HOME/bridge/agent`."""
    return state or paths.state_dir() / "agent"


class Enrolment(NamedTuple):
    """The hub this agent belongs to, the pin its certificate must match, and the agent's name there."""

    agent: str
    hub: HubAddress
    fingerprint: str
    enrolled: bool  # False until the hub accepted the enrolment token and our key


def save_enrolment(folder: Path, enrolment: Enrolment) -> None:
    save_json(folder / "enrolment.json", {"agent": enrolment.agent, "host": enrolment.hub.host,
                                          "port": enrolment.hub.port, "fingerprint": enrolment.fingerprint,
                                          "enrolled": enrolment.enrolled})


def load_enrolment(folder: Path) -> Enrolment | None:
    data = load_json(folder / "enrolment.json")
    try:
        return Enrolment(str(data["agent"]), HubAddress(str(data["host"]), int(data["port"])),
                         str(data["fingerprint"]), bool(data["enrolled"])) if data else None
    except (KeyError, TypeError, ValueError):
        return None


def agent_key(folder: Path, *, fresh: bool) -> bytes:
    """The agent's Ed25519 private key (0600); `fresh` makes a new one, as each enrolment does."""
    from bridge.hublink import new_agent_key

    path = folder / "agent.key"
    if path.is_file() and not fresh:
        return path.read_bytes()
    key = new_agent_key()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    os.replace(tmp, path)
    return key


def require_enrolment(folder: Path) -> Enrolment:
    """The saved enrolment; raises UsageError telling how to enrol when there is none."""
    enrolment = load_enrolment(folder)
    if enrolment is None or not enrolment.enrolled:
        raise UsageError("this agent is not enrolled with a hub",
                         hint="on the hub: `bridge hub token agent NAME`; here: `bridge agent up --hub wss://HUB --token T`")
    return enrolment


@dataclass
class AgentStatus:
    """What `bridge agent status` shows; saved after every change and every heartbeat."""

    pid: int
    agent: str
    hub: str
    state: str = "starting"
    started_at: float = dataclasses.field(default_factory=time.time)
    connected_since: float | None = None
    rtt_ms: float | None = None
    last_heartbeat_at: float | None = None
    reconnects: int = 0
    connects: int = 0
    streams: int = 0
    last_error: str | None = None
    last_error_at: float | None = None

    def connected(self) -> None:
        self.connects += 1
        self.reconnects = self.connects - 1
        self.state, self.connected_since = "connected", time.time()

    def failed(self, error: str, state: str = "retrying") -> None:
        self.state, self.connected_since = state, None
        self.last_error, self.last_error_at = error, time.time()

    def heartbeat(self, rtt_s: float) -> None:
        self.rtt_ms, self.last_heartbeat_at = round(rtt_s * 1000, 2), time.time()


def status_path(folder: Path) -> Path:
    return folder / "status.json"


def save_status(folder: Path, status: AgentStatus) -> None:
    save_json(status_path(folder), dataclasses.asdict(status))


def load_status(folder: Path) -> AgentStatus | None:
    data = load_json(status_path(folder))
    if data is None:
        return None
    try:
        return AgentStatus(**{f.name: data[f.name] for f in dataclasses.fields(AgentStatus) if f.name in data})
    except TypeError:
        return None
