"""Sandbox containers on an engine: names that carry their owner, create, remove, list."""
from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass

from bridge.errors import SandboxError

from .engine import Engine, EngineError
from .spec import BUILD_HINT, LABEL, SandboxSpec, container_config

POOL_PREFIX = "bridge-pool-"    # idle, started, waiting for a command; claimable by anyone
CLAIM_PREFIX = "bridge-claim-"  # being claimed (between two renames)
RUN_PREFIX = "bridge-run-"      # running a command for bridge-run-<token>.<pid>.<host>


@dataclass(frozen=True)
class Box:
    """One sandbox container: its id, its name and whether PID 1 is already running."""

    id: str
    name: str
    started: bool


def owner_suffix() -> str:
    """`<pid>.<host>`: who runs a container, so leftovers of a dead bridge can be told apart."""
    return f"{os.getpid()}.{socket.gethostname()}"


def parse_owner(name: str) -> tuple[int, str] | None:
    """(pid, host) from a run container's name, None for pool and foreign names."""
    if not name.startswith(RUN_PREFIX):
        return None
    parts = name[len(RUN_PREFIX):].split(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[2]


def create(engine: Engine, spec: SandboxSpec, name: str, labels: dict[str, str]) -> Box:
    """Create (not start) a sandbox container; raises SandboxError with the fix when the image is missing."""
    body = container_config(spec, {LABEL: "1", **labels})
    try:
        cid = engine.create(body, name)
    except EngineError as e:
        if e.status == 404:
            raise SandboxError(f"sandbox image {spec.image} not found on the docker engine", BUILD_HINT) from e
        raise
    return Box(cid, name, started=False)


def create_run_box(engine: Engine, spec: SandboxSpec) -> Box:
    """A fresh container for one cold run, named after its owner."""
    return create(engine, spec, f"{RUN_PREFIX}{secrets.token_hex(6)}.{owner_suffix()}", {})


def start(engine: Engine, box: Box) -> Box:
    """Start PID 1 (the launcher, which then waits for its command on stdin)."""
    engine.start(box.id)
    return Box(box.id, box.name, started=True)


def rename(engine: Engine, old: str, new: str) -> None:
    """Rename by the old name; the engine refuses a name that is gone (404) or already the current one."""
    engine.rename(old, new)


def remove(engine: Engine, ref: str) -> None:
    """Kill and delete a container; one already gone is fine."""
    try:
        engine.remove(ref)
    except EngineError as e:
        if e.status not in (404, 409):  # 409: removal already in progress
            raise


def list_boxes(engine: Engine, *labels: str, running_only: bool = False) -> list[dict]:
    """Every bridge sandbox container (optionally narrowed by more labels), as the engine lists them."""
    filters: dict[str, list[str]] = {"label": [f"{LABEL}=1", *labels]}
    if running_only:
        filters["status"] = ["running"]
    return engine.containers(filters, all=not running_only)


def name_of(entry: dict) -> str:
    """The container's name without docker's leading slash."""
    return entry["Names"][0].lstrip("/") if entry.get("Names") else entry["Id"]
