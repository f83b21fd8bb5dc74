"""Ready containers: started ahead of time, each claimed by exactly one run, then destroyed.

The pool lives on the engine, not in a process, so it survives across bridge invocations:
idle containers are named `bridge-pool-<token>` and labelled with the spec's key. A run claims
one by renaming it *by its old name* to `bridge-claim-<token>`; the engine serialises renames
of a container and refuses both a rename of a name that no longer exists (404) and a rename to
the current name, so of two racing claimers exactly one wins. The winner then renames it to
`bridge-run-<token>.<pid>.<host>` so leftover cleanup knows its owner. A pool container has
only run the launcher, which waits on stdin: no state of any run is ever seen by another.
"""
from __future__ import annotations

import fcntl
import json
import os
import secrets
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from bridge.paths import ensure_private_dir, runtime_dir

from .box import (CLAIM_PREFIX, POOL_PREFIX, RUN_PREFIX, Box, create, list_boxes, name_of, owner_suffix, remove,
                  rename, start)
from .cleanup import remove_leftovers
from .engine import Engine, EngineError
from .spec import SandboxSpec

POOL_LABEL = "bridge.pool"


def claim(engine: Engine, spec: SandboxSpec) -> Box | None:
    """Take one idle container of this spec for our run, or None when none is ready."""
    for entry in idle(engine, spec):
        box = _claim_one(engine, entry["Id"], name_of(entry))
        if box:
            return box
    return None


def idle(engine: Engine, spec: SandboxSpec | None = None) -> list[dict]:
    """Idle pool containers (of one spec, or of all)."""
    labels = [f"{POOL_LABEL}={spec.key()}"] if spec else [POOL_LABEL]
    return [e for e in list_boxes(engine, *labels, running_only=True) if name_of(e).startswith(POOL_PREFIX)]


def fill(engine: Engine, spec: SandboxSpec) -> int:
    """Create and start containers until `spec.pool` are idle; returns how many were added."""
    missing = spec.pool - len(idle(engine, spec))
    for _ in range(missing):
        box = create(engine, spec, POOL_PREFIX + secrets.token_hex(6), {POOL_LABEL: spec.key()})
        try:
            start(engine, box)
        except BaseException:
            remove(engine, box.id)
            raise
    return max(missing, 0)


def drain(engine: Engine, spec: SandboxSpec | None = None) -> int:
    """Remove idle pool containers (of one spec, or all); returns how many."""
    entries = idle(engine, spec)
    for entry in entries:
        remove(engine, name_of(entry))
    return len(entries)


def refill(engine: Engine, spec: SandboxSpec) -> None:
    """Clear leftovers and fill the pool, unless another refiller of this pool is at work (it finishes).

    One refiller per pool and client host at a time: a lock file (flock, so two threads of the
    keeper exclude each other as two processes do). Raises SandboxError when the engine fails.
    """
    lock_path = ensure_private_dir(runtime_dir()) / f"sandbox-pool-{spec.key()}.lock"
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        remove_leftovers(engine)
        while fill(engine, spec):  # runs may claim while we fill: go again until full
            pass


def spawn_refill(engine: Engine, spec: SandboxSpec) -> None:
    """refill() in a detached process, off the run's critical path (the keeper uses a thread instead).

    A process, not a thread: a one-shot `bridge exec` exits right after its run.
    """
    root = str(Path(__file__).resolve().parents[3])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    subprocess.Popen([sys.executable, "-m", "bridge.exec.sandbox.refill", engine.base_url, json.dumps(asdict(spec))],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True, env=env)


def _claim_one(engine: Engine, cid: str, name: str) -> Box | None:
    token = name[len(POOL_PREFIX):]
    final = f"{RUN_PREFIX}{token}.{owner_suffix()}"
    try:
        rename(engine, name, CLAIM_PREFIX + token)
        rename(engine, CLAIM_PREFIX + token, final)
    except EngineError:
        return None  # another run claimed it first (or cleanup took an abandoned claim)
    return Box(cid, final, started=True)
