"""Shared set-up of the sandbox tests: a real dockerd and the locally built image, or a clear failure."""
from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.exec.sandbox import DEFAULT_URL, Engine, SandboxSpec, drain
from bridge.exec.sandbox.box import list_boxes, name_of

REPO = Path(__file__).resolve().parents[2]


def _script(name: str, timeout: float) -> None:
    proc = subprocess.run([str(REPO / "scripts" / name)], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"scripts/{name} failed (exit {proc.returncode}); docker cannot run here:\n{proc.stderr[-2000:]}")


def start_engine() -> Engine:
    """Start dockerd and build the sandbox image if needed (both idempotent)."""
    _script("start-dockerd.sh", 60)
    _script("build-sandbox-image.sh", 600)
    return Engine(DEFAULT_URL)


def assert_no_sandbox_left(engine: Engine) -> None:
    """After the tests: no container labelled bridge.sandbox remains (idle pool ones drained first).

    Pool refills run in detached processes, so drain until a second passes with none created.
    """
    while drain(engine):
        time.sleep(1.0)
    left = [name_of(e) for e in list_boxes(engine)]
    assert not left, f"sandbox containers left behind: {left}"


def spec(**overrides: object) -> SandboxSpec:
    """The default spec with a timeout so no broken test hangs."""
    return SandboxSpec(**{"timeout": 60.0, **overrides})


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """The local engine, started for the tests; at the end, checks nothing was left behind."""
    eng = start_engine()
    yield eng
    assert_no_sandbox_left(eng)
