"""The test server itself: systemd as PID 1, reachable over SSH as root and as a lingering account."""
from __future__ import annotations

from pathlib import Path

from tests.conftest import write_config
from tests.systemd_server import SystemdServer


def test_both_logins_reach_a_running_service_manager(bridge, server: SystemdServer, workspace: Path,
                                                     login: str) -> None:
    write_config(workspace, f"workspace: probe\nremotes:\n  box: {{url: {server.url(login, '/tmp')}}}\n")
    flag = [] if login == "root" else ["--user"]
    result = bridge("exec", "box", "--", "systemctl", *flag, "is-system-running", cwd=workspace)
    assert result.code == 0, result
    assert result.out.strip() == "running"
