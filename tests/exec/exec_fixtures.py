"""Fixtures for the exec tests (imported by each module; kept out of conftest.py, which the package shares).

`target` is a workspace with one remote `prod` on a real sshd whose deploy path is a folder of
tmp_path; every keeper a test starts is stopped afterwards, by the PID in its lock file.
"""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.conftest import Home, Result, write_config
from tests.sshd import SSHServer


@dataclass
class Target:
    """A workspace whose remote `prod` is `server`, deploying to `deploy`."""

    workspace: Path
    server: SSHServer
    deploy: Path
    run: Callable[..., Result]

    def exec(self, *args: str, **kw) -> Result:
        return self.run("exec", *args, cwd=self.workspace, **kw)


@pytest.fixture(autouse=True)
def stop_keepers(home: Home) -> Iterator[None]:
    """Keepers exit when idle anyway; a test stops its own at once (by PID) so none outlives it."""
    home.env["BRIDGE_KEEPER_IDLE"] = "60"
    yield
    lock = Path(home.env["XDG_RUNTIME_DIR"]) / "bridge" / "keeper.lock"
    pid = keeper_pid(lock)
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def keeper_pid(lock: Path) -> int | None:
    try:
        return int(lock.read_text() or 0) or None
    except (OSError, ValueError):
        return None


@pytest.fixture
def target(sshd: SSHServer, bridge: Callable[..., Result], tmp_path: Path) -> Target:
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    workspace = tmp_path / "ws"
    workspace.mkdir()
    write_config(workspace, f"workspace: w\nremotes:\n  prod: {{url: \"{sshd.url(str(deploy))}\"}}\n"
                            f"  here: {{url: \"local://{deploy}\"}}\ndefault: prod\n")
    return Target(workspace, sshd, deploy, bridge)
