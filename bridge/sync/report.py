"""Read the deploy hook's output: `bridge:step {json}` / `bridge:done {json}` marker lines among plain ones.

The same lines arrive as git's `remote: …` lines (post-receive) or bare (`hook.py --deploy`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

REMOTE_PREFIX = "remote: "


@dataclass(frozen=True)
class Line:
    """One line of hook or git output for `host`."""

    host: str
    text: str


@dataclass(frozen=True)
class Step:
    """A deploy step started or ended on `host`."""

    host: str
    name: str
    event: str  # "start" | "end"
    ok: bool | None = None
    duration: float | None = None


Event = Any  # Line | Step | HostDone (service.py); the CLI renders them
Emit = Callable[[Event], None]


@dataclass
class DeployReport:
    """What the hook said about one deploy: its `bridge:done` summary and the lines around it."""

    done: dict | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.done is not None and self.done.get("result") == "ok"


class MarkerReader:
    """Feed it output lines; it records the summary and emits Step and Line events as they come."""

    def __init__(self, host: str, emit: Emit, *, remote_only: bool = False) -> None:
        self.host, self.emit, self.remote_only = host, emit, remote_only
        self.report = DeployReport()

    def feed(self, raw: str) -> None:
        """One line; with `remote_only` (git's stderr) only `remote: ` lines are the hook's."""
        text = raw.rstrip()
        if self.remote_only:
            if not text.startswith(REMOTE_PREFIX.rstrip()):
                return
            text = text[len(REMOTE_PREFIX):].rstrip()
        kind, payload = parse_marker(text)
        if kind == "step":
            self.emit(Step(self.host, payload.get("step", "?"), payload.get("event", "?"),
                           payload.get("ok"), payload.get("duration")))
        elif kind == "done":
            self.report.done = payload
        else:
            self.report.lines.append(text)
            self.emit(Line(self.host, text))


def parse_marker(text: str) -> tuple[str | None, dict]:
    """(`step`|`done`, payload) for a marker line, (None, {}) for anything else."""
    for kind in ("step", "done"):
        prefix = f"bridge:{kind} "
        if text.startswith(prefix):
            try:
                return kind, json.loads(text[len(prefix):])
            except ValueError:
                return None, {}
    return None, {}
