"""Fixtures for the exec tests (imported by each module; kept out of conftest.py, which the package shares).

`target` is a workspace with one remote `prod` on a real sshd whose deploy path is a folder of
tmp_path (every keeper a test starts is stopped by the `home` fixture, by the PID in its lock file).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import Result, keeper_pid, write_config  # noqa: F401 - keeper_pid re-exported
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


@pytest.fixture
def target(sshd: SSHServer, bridge: Callable[..., Result], tmp_path: Path) -> Target:
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    workspace = tmp_path / "ws"
    workspace.mkdir()
    write_config(workspace, f"workspace: w\nremotes:\n  prod: {{url: \"{sshd.url(str(deploy))}\"}}\n"
                            f"  here: {{url: \"local://{deploy}\"}}\ndefault: prod\n")
    return Target(workspace, sshd, deploy, bridge)
