"""Remove what a crashed or killed bridge left behind on an engine."""
from __future__ import annotations

import socket
import time

from bridge.procs import pid_alive

from .box import CLAIM_PREFIX, POOL_PREFIX, list_boxes, name_of, parse_owner, remove
from .engine import Engine

POOL_TTL = 3600.0  # an idle pool container older than this belongs to a pool nobody uses any more
FILL_GRACE = 60.0  # a refill creates, then starts: a pool container not running for longer is dead


def remove_leftovers(engine: Engine) -> list[str]:
    """Delete orphaned sandbox containers; returns their names.

    Orphans: run containers whose owner pid on this host is dead, stale pool containers and
    ones not running past FILL_GRACE (younger ones may be between a refill's create and start),
    and claims abandoned between their two renames. Removal goes by name, so a
    container claimed or renamed since the listing is left alone.
    """
    gone = [name_of(e) for e in list_boxes(engine) if _is_leftover(e)]
    for name in gone:
        remove(engine, name)
    return gone


def _is_leftover(entry: dict) -> bool:
    name = name_of(entry)
    if name.startswith(POOL_PREFIX):
        age = time.time() - entry.get("Created", 0)
        return age > POOL_TTL or (entry.get("State") != "running" and age > FILL_GRACE)
    if name.startswith(CLAIM_PREFIX):
        return True
    owner = parse_owner(name)
    # Containers of another client host: their owner's liveness cannot be checked from here.
    return owner is not None and owner[1] == socket.gethostname() and not pid_alive(owner[0])

