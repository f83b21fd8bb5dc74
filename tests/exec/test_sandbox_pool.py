"""The pool (one container per run, claimed atomically, refilled) and cleanup of a dead bridge's leftovers."""
from __future__ import annotations

import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from bridge.exec.sandbox import drain, fill, remove_leftovers, run_in_sandbox
from bridge.exec.sandbox.box import create, list_boxes, name_of
from bridge.exec.sandbox.pool import POOL_LABEL, claim, idle
from bridge.exec.sandbox.box import CLAIM_PREFIX, POOL_PREFIX, remove
from tests.exec.sandbox_env import engine, spec  # noqa: F401 - fixture


def wait_idle(engine, s, count: int, within: float = 30.0) -> int:
    end = time.monotonic() + within
    while len(idle(engine, s)) < count and time.monotonic() < end:
        time.sleep(0.1)
    return len(idle(engine, s))


def test_pooled_run_uses_a_ready_container_once_then_refills(engine) -> None:
    s = spec(pool=2)
    fill(engine, s)
    ready = {e["Id"] for e in idle(engine, s)}
    assert len(ready) == 2
    first = run_in_sandbox(s, "echo secret > /tmp/state; hostname", engine=engine)
    second = run_in_sandbox(s, "cat /tmp/state 2>/dev/null; hostname", engine=engine)
    assert first.exit_code == 0 and second.exit_code == 0
    assert first.stdout_bytes.strip()[:12].decode() in {i[:12] for i in ready}  # hostname = short container id
    assert b"secret" not in second.stdout_bytes and first.stdout_bytes != second.stdout_bytes
    assert wait_idle(engine, s, 2) == 2
    assert not {e["Id"] for e in idle(engine, s)} & ready  # used ones are gone, never reused
    drain(engine, s)


def test_a_ready_container_is_claimed_by_exactly_one_run(engine) -> None:
    s = spec(pool=1)
    fill(engine, s)
    with ThreadPoolExecutor(8) as pool:
        boxes = [b for b in pool.map(lambda _: claim(engine, s), range(8)) if b]
    assert len(boxes) == 1
    remove(engine, boxes[0].id)


def test_pooled_run_enforces_the_same_limits(engine) -> None:
    s = spec(pool=1, memory="256m")
    fill(engine, s)
    oom = run_in_sandbox(s, ["python3", "-c", "b = b'x' * (1 << 30)"], engine=engine)
    assert oom.status == "oom", oom
    wait_idle(engine, s, 1)
    late = run_in_sandbox(s, ["sleep", "100"], timeout=1, engine=engine)
    assert late.status == "timeout"
    wait_idle(engine, s, 1)
    drain(engine, s)


def test_leftovers_of_a_dead_bridge_are_removed(engine) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    orphan = create(engine, spec(), f"bridge-run-feedbeef0001.{dead.pid}.{host}", {})
    foreign = create(engine, spec(), f"bridge-run-feedbeef0002.{dead.pid}.other-host", {})
    alive = create(engine, spec(), f"bridge-run-feedbeef0003.1.{host}", {})  # pid 1 never dies
    try:
        gone = remove_leftovers(engine)
        names = {name_of(e) for e in list_boxes(engine)}
        assert orphan.name in gone and orphan.name not in names
        assert {foreign.name, alive.name} <= names
    finally:
        for box in (orphan, foreign, alive):
            remove(engine, box.id)


def test_a_pool_container_being_filled_is_not_a_leftover(engine) -> None:
    """A refill creates, then starts: a cold run's cleanup in between must not take it (the keeper
    serves several workspaces, so one's cleanup meets another's refill)."""
    s = spec(pool=1)
    filling = create(engine, s, f"{POOL_PREFIX}feedbeef0004", {POOL_LABEL: s.key()})
    try:
        remove_leftovers(engine)
        assert filling.name in {name_of(e) for e in list_boxes(engine)}
    finally:
        remove(engine, filling.id)


def test_a_claim_in_progress_is_not_a_leftover(engine) -> None:
    """A run is between its two renames: a cleanup then (another run's refill) must not kill it,
    since the engine resolves the name first and would kill the container even once renamed."""
    claiming = create(engine, spec(), f"{CLAIM_PREFIX}feedbeef0005", {})
    try:
        remove_leftovers(engine)
        assert claiming.name in {name_of(e) for e in list_boxes(engine)}
    finally:
        remove(engine, claiming.id)
