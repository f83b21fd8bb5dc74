"""What the supervisor yields: one event per state change, rendered by the CLI and kept in the state file."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Connecting:
    """An attempt to reach the relay starts."""

    relay: str
    attempt: int


@dataclass(frozen=True)
class Connected:
    """The SSH session to the relay is up; each forward's outcome follows as ForwardUp or ForwardRefused."""

    relay: str
    forwards: tuple[str, ...]


@dataclass(frozen=True)
class ForwardUp:
    """The relay granted `forward` (at connect, or on a retry over the live session)."""

    forward: str


@dataclass(frozen=True)
class ForwardRefused:
    """The relay refused `forward`; the other forwards stay up and this one is asked for again each heartbeat."""

    forward: str
    reason: str
    hint: str


@dataclass(frozen=True)
class Heartbeat:
    """The relay answered a heartbeat after `rtt_s` seconds (not a state change: kept, not logged)."""

    rtt_s: float


@dataclass(frozen=True)
class Disconnected:
    """A live tunnel died: the relay closed it or stopped answering heartbeats."""

    reason: str


@dataclass(frozen=True)
class Retrying:
    """An attempt failed (`error`); the next one starts in `in_s` seconds, or as soon as the relay's port
    answers again when `probing` (the failure was the network, not the relay)."""

    in_s: float
    error: str
    probing: bool = False
    hint: str = ""


@dataclass(frozen=True)
class Stopped:
    """`down` or SIGTERM: forwards cancelled, the process exits 0."""


Event = Connecting | Connected | ForwardUp | ForwardRefused | Heartbeat | Disconnected | Retrying | Stopped
