"""`bridge status`: ahead/behind, dirty files, deployed commit and last deploy, reachability."""
from __future__ import annotations

import json
from pathlib import Path

from tests.sshd import SSHServer
from tests.sync.test_push import Root, commit, git, server_root, ssh_ws  # noqa: F401 - fixtures


def test_status_json_after_a_push_and_a_local_commit(bridge, ssh_ws: Path, server_root: Root) -> None:
    deployed = git(ssh_ws, "rev-parse", "HEAD")
    assert bridge("push", cwd=ssh_ws).code == 0
    commit(ssh_ws, {"later.txt": "x\n"})
    (ssh_ws / "README").write_text("dirty\n")
    result = bridge("status", "--json", cwd=ssh_ws)
    assert result.code == 0, result
    (row,) = json.loads(result.out)
    assert row["reachable"] is True and row["ahead"] == 1 and row["behind"] == 0
    assert row["deployed_sha"] == deployed and row["current"] == server_root.current_name()
    assert row["last"]["result"] == "ok" and row["last"]["duration"] >= 0 and row["last"]["start"]
    assert " M README" in row["dirty"]


def test_status_table_shows_an_unreachable_host(bridge, ssh_ws: Path, sshd: SSHServer) -> None:
    sshd.stop()
    result = bridge("status", cwd=ssh_ws)
    assert result.code == 255, result
    assert "prod\tNO" in result.out and "cannot connect" in result.out
