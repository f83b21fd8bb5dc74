"""Capped exponential backoff with jitter, so a fleet of clients never hits a server in lockstep (tunnel and agent reconnects, dropped SSH handshakes)."""
from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays base, 2·base, 4·base… up to `cap`, each scaled by a random factor in [1-jitter, 1]."""

    cap: float = 30.0
    base: float = 0.5
    jitter: float = 0.5
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next(self) -> float:
        """The delay before the next attempt; each call counts one more failure."""
        ceiling = min(self.cap, self.base * 2 ** min(self.failures, 32))
        self.failures += 1
        return ceiling * (1 - self.jitter * self.rng.random())

    def reset(self) -> None:
        """After a healthy connection the next outage starts again from `base`."""
        self.failures = 0
