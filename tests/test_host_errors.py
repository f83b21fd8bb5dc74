"""A host that cannot be reached reads the same in exec, push, status and `bridge test`.

Its row says `unreachable` with exit code 255, the command exits 255 (DESIGN §4), and the host
that is up still gets its work done: every fleet command maps a host's error through one
function (bridge.fleet.host_failure). The sudo fleet's case is in tests/exec/test_sudo.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.sync.test_push import commit, git


@pytest.fixture
def half_down(bridge, sshd_factory, workspace: Path, tmp_path: Path) -> Path:
    """A workspace with remotes `up` and `down`, both prepared by `bridge init`, then `down`'s sshd stopped."""
    up, down = sshd_factory(), sshd_factory()
    git(workspace, "init", "-q", "-b", "main")
    write_config(workspace, f"workspace: app\nremotes:\n  up: {{url: \"{up.url(str(tmp_path / 'up'))}\"}}\n"
                            f"  down: {{url: \"{down.url(str(tmp_path / 'down'))}\"}}\ngroups:\n  both: [up, down]\n")
    commit(workspace, {"README": "app\n"}, "first")
    assert bridge("init", cwd=workspace).code == 0
    down.stop()
    return workspace


def _down_row(rows: list[dict]) -> dict:
    row = next(r for r in rows if r["host"] == "down")
    assert (row["status"], row["exit_code"]) == ("unreachable", 255), row
    assert "cannot connect" in row["error"], row
    return row


def test_exec_status_and_test_give_the_unreachable_host_the_same_row(bridge, half_down: Path) -> None:
    ran = bridge("exec", "--on", "both", "--json", "--", "echo", "hi", cwd=half_down)
    asked = bridge("status", "both", "--json", cwd=half_down)
    tested = bridge("test", "both", "--json", cwd=half_down)
    for result in (ran, asked, tested):
        assert result.code == 255, result
    _down_row([json.loads(line) for line in ran.out.splitlines()])
    _down_row(json.loads(asked.out))
    _down_row(json.loads(tested.out))
    assert [r["stdout"] for r in map(json.loads, ran.out.splitlines()) if r["host"] == "up"] == ["hi\n"]
    assert [r["reachable"] for r in json.loads(asked.out)] == [True, False]
    up_report = next(r for r in json.loads(tested.out) if r["host"] == "up")
    assert up_report["status"] == "ok" and up_report["exit_code"] == 0, up_report


def test_push_gives_the_unreachable_host_the_same_status_and_exit_code(bridge, half_down: Path,
                                                                        tmp_path: Path) -> None:
    result = bridge("push", "both", cwd=half_down)
    assert result.code == 255, result
    summary = [line.split() for line in result.out.splitlines() if line.split()[:1] == ["down"]]
    assert any(row[1] == "unreachable" for row in summary), result.out
    assert (tmp_path / "up" / "current" / "README").read_text() == "app\n"  # the host that is up deployed
