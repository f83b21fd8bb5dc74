"""The state file a running tunnel keeps, so `status` can show it and `down` can find the process."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from bridge import paths
from bridge.statefile import load_json, save_json
from bridge.tunnel.events import (Connected, Connecting, Disconnected, Event, ForwardRefused, ForwardUp, Heartbeat,
                                  Retrying, Stopped)


def state_path(name: str) -> Path:
    """`$XDG_STATE_HOME/bridge/tunnel/<workspace>.json`."""
    return paths.state_dir() / "tunnel" / f"{name or 'default'}.json"


@dataclass
class ForwardState:
    """One forward as `status` shows it: `up`, `refused` (with the relay's reason and a next step), `asking`
    (requested, no answer yet) or `down` (no session); `since` is when it entered that state."""

    forward: str
    state: str = "down"
    since: float = field(default_factory=time.time)
    reason: str | None = None
    hint: str | None = None

    def enter(self, state: str, reason: str | None = None, hint: str | None = None) -> bool:
        """Move to `state`; True if that changed anything (`since` moves only when the state itself does)."""
        if (state, reason, hint) == (self.state, self.reason, self.hint):
            return False
        if state != self.state:
            self.state, self.since = state, time.time()
        self.reason, self.hint = reason, hint
        return True


@dataclass
class TunnelState:
    """What `status` shows; `apply()` folds each supervisor event into it.

    `last_error` (with `last_error_at` and `hint`, its next step) is cleared at the first heartbeat
    after which every forward is up: a healthy tunnel shows no stale error.
    """

    pid: int
    relay: str
    forwards: list[ForwardState] = field(default_factory=list)
    state: str = "starting"
    started_at: float = field(default_factory=time.time)
    connected_since: float | None = None
    last_heartbeat_rtt_ms: float | None = None
    last_heartbeat_at: float | None = None
    reconnects: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    hint: str | None = None
    connects: int = 0

    def apply(self, event: Event) -> bool:
        """Update from `event`; True if it changed the state (worth a log line)."""
        if isinstance(event, Heartbeat):
            self.last_heartbeat_rtt_ms = round(event.rtt_s * 1000, 2)
            self.last_heartbeat_at = time.time()
            if all(f.state == "up" for f in self.forwards):
                self._error(None)
            return False
        if isinstance(event, ForwardUp):
            return self._forward(event.forward, "up")
        if isinstance(event, ForwardRefused):
            changed = self._forward(event.forward, "refused", event.reason, event.hint)
            self._error(event.reason, event.hint)
            return changed
        if isinstance(event, Connected):
            self.connects += 1
            self.reconnects = self.connects - 1
            self.connected_since = time.time()
            self._all_forwards("asking")
        elif isinstance(event, (Disconnected, Retrying, Stopped)):
            self.connected_since = None
            self._all_forwards("down")
            if not isinstance(event, Stopped):
                self._error(getattr(event, "reason", None) or getattr(event, "error", None),
                            getattr(event, "hint", None) or None)
        self.state = _STATE_NAMES[type(event)]
        return True

    def _forward(self, name: str, state: str, reason: str | None = None, hint: str | None = None) -> bool:
        changed = next((f.enter(state, reason, hint) for f in self.forwards if f.forward == name), False)
        self.state = "degraded" if any(f.state == "refused" for f in self.forwards) else "connected"
        return changed

    def _all_forwards(self, state: str) -> None:
        for forward in self.forwards:
            forward.enter(state)

    def _error(self, message: str | None, hint: str | None = None) -> None:
        self.last_error, self.hint = message, hint
        self.last_error_at = None if message is None else time.time()

    def to_dict(self) -> dict:
        """The JSON `status --json` prints (times are Unix seconds)."""
        return dataclasses.asdict(self)


_STATE_NAMES = {Connecting: "connecting", Connected: "connected", Disconnected: "disconnected",
                Retrying: "retrying", Stopped: "stopped"}


def save(path: Path, state: TunnelState) -> None:
    """Write atomically: `status` never reads half a file."""
    save_json(path, state.to_dict())


def load(path: Path) -> TunnelState | None:
    """The last state written, or None if no tunnel ever ran here (or the file is unreadable or from an older
    bridge)."""
    data = load_json(path)
    if data is None:
        return None
    try:
        fields = {f.name: data[f.name] for f in dataclasses.fields(TunnelState) if f.name in data}
        fields["forwards"] = [ForwardState(**f) for f in fields.get("forwards", [])]
        return TunnelState(**fields)
    except TypeError:
        return None
