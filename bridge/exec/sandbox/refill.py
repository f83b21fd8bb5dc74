"""Detached helper: `python -m bridge.exec.sandbox.refill BASE_URL SPEC_JSON` clears leftovers and refills a pool.

A one-shot `bridge exec --no-reuse` starts it (pool.spawn_refill); the keeper refills on a thread.
"""
from __future__ import annotations

import json
import sys

from bridge.errors import BridgeError

from .engine import Engine
from .pool import refill
from .spec import SandboxSpec


def main(argv: list[str]) -> int:
    """Refill the pool described by argv; exit 0 also when another refiller is at work."""
    try:
        refill(Engine(argv[0]), SandboxSpec(**json.loads(argv[1])))
    except BridgeError:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
