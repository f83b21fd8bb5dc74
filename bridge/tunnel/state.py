"""The state file a running tunnel keeps, so `status` can show it and `down` can find the process."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from bridge import paths
from bridge.statefile import load_json, save_json
from bridge.tunnel.events import Connected, Connecting, Disconnected, Event, Heartbeat, Retrying, Stopped


def state_path(name: str) -> Path:
    """`$XDG_STATE_HOME/bridge/tunnel/<workspace>.json`."""
    return paths.state_dir() / "tunnel" / f"{name or 'default'}.json"


@dataclass
class TunnelState:
    """What `status` shows; `apply()` folds each supervisor event into it."""

    pid: int
    relay: str
    forwards: list[str] = field(default_factory=list)
    state: str = "starting"
    started_at: float = field(default_factory=time.time)
    connected_since: float | None = None
    last_heartbeat_rtt_ms: float | None = None
    last_heartbeat_at: float | None = None
    reconnects: int = 0
    last_error: str | None = None
    connects: int = 0

    def apply(self, event: Event) -> bool:
        """Update from `event`; True if it changed the state (worth a log line)."""
        if isinstance(event, Heartbeat):
            self.last_heartbeat_rtt_ms = round(event.rtt_s * 1000, 2)
            self.last_heartbeat_at = time.time()
            return False
        if isinstance(event, Connected):
            self.connects += 1
            self.reconnects = self.connects - 1
            self.connected_since, self.forwards = time.time(), list(event.forwards)
        elif isinstance(event, (Disconnected, Retrying, Stopped)):
            self.connected_since = None
            self.last_error = getattr(event, "reason", None) or getattr(event, "error", None) or self.last_error
        self.state = _STATE_NAMES[type(event)]
        return True

    def to_dict(self) -> dict:
        """The JSON `status --json` prints (times are Unix seconds)."""
        return dataclasses.asdict(self)


_STATE_NAMES = {Connecting: "connecting", Connected: "connected", Disconnected: "disconnected",
                Retrying: "retrying", Stopped: "stopped"}


def save(path: Path, state: TunnelState) -> None:
    """Write atomically: `status` never reads half a file."""
    save_json(path, state.to_dict())


def load(path: Path) -> TunnelState | None:
    """The last state written, or None if no tunnel ever ran here (or the file is unreadable)."""
    data = load_json(path)
    if data is None:
        return None
    try:
        return TunnelState(**{f.name: data[f.name] for f in dataclasses.fields(TunnelState) if f.name in data})
    except TypeError:
        return None
