"""The reconnect loop: connect, watch, and after any failure wait one backoff step and try again, forever.

Backoff spaces out full SSH attempts (handshake + auth + forward requests), which are what a relay
pays for and what fail2ban counts. While the last failure was the network itself (refused, timed
out, unreachable), a bare TCP probe every quarter second checks whether the relay is back; the
moment it answers, the wait ends. A probe that fails never reaches sshd, so an outage costs the
relay nothing, and the tunnel is back within a probe interval instead of a whole backoff step.
"""
from __future__ import annotations

import dataclasses
import errno
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generator, Iterator

from bridge.errors import BridgeError
from bridge.backoff import Backoff
from bridge.tunnel.events import (Connected, Connecting, Disconnected, Event, ForwardRefused, ForwardUp, Heartbeat,
                                  Retrying, Stopped)
from bridge.tunnel.forwards import Forward
from bridge.tunnel.pipe import Log
from bridge.tunnel.session import RELAY_SETTINGS_HINT, Session

if TYPE_CHECKING:
    from bridge.ssh.settings import SSHSettings

PROBE_EVERY = 0.25
PROBE_TIMEOUT = 0.5
WATCH_SLICE = 0.1  # how often a closed transport (relay killed, RST) is noticed between heartbeats
_NETWORK_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT}


@dataclass(frozen=True)
class Plan:
    """What to keep up: the relay's SSH settings, the forwards, heartbeat period and backoff cap."""

    settings: "SSHSettings"
    forwards: tuple[Forward, ...]
    keepalive: float = 15.0
    backoff_cap: float = 30.0
    trust_hint: str = "bridge test --trust RELAY"

    def tuned(self) -> "Plan":
        """Connect attempts give up after two heartbeats at most (a cut link must not stall the loop for
        the kernel's 2-minute SYN timeout); paramiko's own fire-and-forget keepalive is off, ours expects a reply."""
        timeout = min(self.settings.connect_timeout, max(3.0, 2 * self.keepalive))
        return dataclasses.replace(self, settings=self.settings._replace(connect_timeout=timeout, keepalive=0))


class Supervisor:
    """Runs `plan` until `stop` is set, yielding one event per state change (and each heartbeat)."""

    def __init__(self, plan: Plan, stop: threading.Event, log: Log) -> None:
        self.plan = plan.tuned()
        self.stop = stop
        self.log = log
        self.backoff = Backoff(cap=plan.backoff_cap)

    @property
    def relay(self) -> str:
        """`user@relay:port`, for log lines."""
        return self.plan.settings.describe()

    def run(self) -> Iterator[Event]:
        """Reconnect forever; returns after yielding Stopped."""
        attempt = 0
        while not self.stop.is_set():
            attempt += 1
            yield Connecting(self.relay, attempt)
            try:
                session = Session(self.plan.settings, self.plan.forwards, self.log, self.plan.trust_hint).open()
            except BridgeError as e:
                wait, probe = self.backoff.next(), _network_failure(e)
                yield Retrying(round(wait, 2), e.message, probe, e.hint)
                self._pause(wait, probe)
                continue
            yield Connected(self.relay, tuple(str(f) for f in self.plan.forwards))
            healthy = yield from self._watch(session)
            if not healthy and not self.stop.is_set():
                wait = self.backoff.next()
                yield Retrying(round(wait, 2), "the connection dropped before its first heartbeat", True)
                self._pause(wait, probe=True)
        yield Stopped()

    def _watch(self, session: Session) -> Generator[Event, None, bool]:
        """Heartbeat until the session dies (yield Disconnected) or stop (cancel forwards); True if it was healthy.

        Forwards the relay refused are asked for again after each heartbeat, over this same session:
        a port held by a stale session costs the relay one request per heartbeat, not a whole login.
        """
        healthy = False
        refused: dict[Forward, str] = {}
        lost = yield from self._ask(session, self.plan.forwards, refused)
        while lost is None and self._sleep_unless_dead(session, self.plan.keepalive):
            rtt = session.heartbeat(timeout=self.plan.keepalive)
            if rtt is None:
                lost = f"no answer to a heartbeat within {self.plan.keepalive:g}s: the link is dead"
                break
            healthy = True
            self.backoff.reset()
            yield Heartbeat(rtt)
            lost = yield from self._ask(session, tuple(refused), refused)
        if self.stop.is_set():
            session.cancel_forwards()
            session.close()
            return healthy
        session.close()
        yield Disconnected(lost or "the relay closed the connection")
        return healthy

    def _ask(self, session: Session, forwards: tuple[Forward, ...],
             refused: dict[Forward, str]) -> Generator[Event, None, str | None]:
        """Ask for each of `forwards`: yields ForwardUp when granted, ForwardRefused when refused for a new reason;
        `refused` keeps the ones still to ask for. Returns why the link died while asking, else None."""
        for forward in forwards:
            try:
                why = session.request(forward)
            except BridgeError as e:
                return e.message
            before = refused.pop(forward, None)
            if why is None:
                yield ForwardUp(str(forward))
            else:
                refused[forward] = why
                if why != before:
                    yield ForwardRefused(str(forward), why, RELAY_SETTINGS_HINT)
        return None

    def _sleep_unless_dead(self, session: Session, seconds: float) -> bool:
        """Wait `seconds`, waking early if stop is set or the transport closed; True if it is time to ping."""
        deadline = time.monotonic() + seconds
        while session.alive and not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            self.stop.wait(min(WATCH_SLICE, left))
        return False

    def _pause(self, seconds: float, probe: bool) -> None:
        """Sleep one backoff step; with `probe`, end it as soon as the relay's port accepts TCP again."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if probe and _reachable(_first_hop(self.plan.settings), min(PROBE_TIMEOUT, left)):
                return
            self.stop.wait(max(0.0, min(PROBE_EVERY, deadline - time.monotonic())))


def _first_hop(settings: "SSHSettings") -> tuple[str, int]:
    """The address bridge actually dials: the outermost jump host, or the relay itself."""
    while settings.via is not None:
        settings = settings.via
    return settings.hostname, settings.port


def _reachable(address: tuple[str, int], timeout: float) -> bool:
    """A bare TCP connect: True if something accepts on `address` (closed at once, no SSH spoken)."""
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def _network_failure(error: BaseException) -> bool:
    """True when the attempt never reached sshd (refused, timed out, unreachable): probing is then free."""
    cause = error.__cause__
    if isinstance(cause, TimeoutError):
        return True
    return isinstance(cause, OSError) and cause.errno in _NETWORK_ERRNOS
