"""Detached helper: `python -m bridge.exec.sandbox.refill BASE_URL SPEC_JSON` clears leftovers and refills a pool.

One refiller per pool and client host at a time (a lock file); a run that finds the lock held
leaves the refill to the one holding it.
"""
from __future__ import annotations

import fcntl
import json
import sys

from bridge.errors import BridgeError
from bridge.paths import ensure_private_dir, runtime_dir

from .cleanup import remove_leftovers
from .engine import Engine
from .pool import fill
from .spec import SandboxSpec


def main(argv: list[str]) -> int:
    """Refill the pool described by argv; exit 0 also when another refiller is at work."""
    engine, spec = Engine(argv[0]), SandboxSpec(**json.loads(argv[1]))
    lock_path = ensure_private_dir(runtime_dir()) / f"sandbox-pool-{spec.key()}.lock"
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0
        try:
            remove_leftovers(engine)
            while fill(engine, spec):  # runs may claim while we fill: go again until full
                pass
        except BridgeError:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
