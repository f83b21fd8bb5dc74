"""Remove what a crashed or killed bridge left behind on an engine."""
from __future__ import annotations

import socket
import time

from bridge.procs import pid_alive

from .box import CLAIM_PREFIX, POOL_PREFIX, list_boxes, name_of, parse_owner, remove, rename
from .engine import Engine, EngineError

POOL_TTL = 3600.0  # an idle pool container older than this belongs to a pool nobody uses any more
FILL_GRACE = 60.0  # a refill creates, then starts: a pool container not running for longer is dead


def remove_leftovers(engine: Engine) -> list[str]:
    """Delete orphaned sandbox containers; returns their names.

    Orphans: run containers whose owner pid on this host is dead, stale pool containers and
    ones not running past FILL_GRACE (younger ones may be between a refill's create and start),
    and claims abandoned between their two renames. The engine resolves a name before it kills,
    so a container renamed meanwhile would still die: a running pool container is first claimed
    like a run claims it (so a run that won it keeps it), and a claim is only taken for abandoned
    once its container is older than any pool container plus as long again (a claim lasts ms).
    """
    entries = [e for e in list_boxes(engine) if _is_leftover(e)]
    return [name_of(e) for e in entries if _take(engine, name_of(e), e.get("State") == "running")]


def _take(engine: Engine, name: str, running: bool) -> bool:
    """Remove one leftover; a running pool container only when we win it from any run claiming it now."""
    if name.startswith(POOL_PREFIX) and running:
        claimed = CLAIM_PREFIX + name[len(POOL_PREFIX):]
        try:
            rename(engine, name, claimed)
        except EngineError:
            return False  # a run claimed it first: it is in use now
        name = claimed
    remove(engine, name)
    return True


def _is_leftover(entry: dict) -> bool:
    name = name_of(entry)
    if name.startswith(POOL_PREFIX):
        age = time.time() - entry.get("Created", 0)
        return age > POOL_TTL or (entry.get("State") != "running" and age > FILL_GRACE)
    if name.startswith(CLAIM_PREFIX):
        return time.time() - entry.get("Created", 0) > 2 * POOL_TTL
    owner = parse_owner(name)
    # Containers of another client host: their owner's liveness cannot be checked from here.
    return owner is not None and owner[1] == socket.gethostname() and not pid_alive(owner[0])

