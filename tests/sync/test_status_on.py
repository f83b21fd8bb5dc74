"""`bridge status --on T` takes its targets the way push and exec do."""
from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import write_config
from tests.sync.test_push import commit, git


def test_status_on_a_group(bridge, workspace: Path, tmp_path: Path) -> None:
    git(workspace, "init", "-q", "-b", "main")
    write_config(workspace, f"workspace: app\nremotes:\n  a: local://{tmp_path / 'a'}\n  b: local://{tmp_path / 'b'}\n"
                            f"  c: local://{tmp_path / 'c'}\ngroups:\n  web: [a, b]\n")
    commit(workspace, {"x": "1\n"}, "first")
    assert bridge("init", cwd=workspace).code == 0
    result = bridge("status", "--on", "web", "--json", cwd=workspace)
    assert result.code == 0, result
    assert [row["remote"] for row in json.loads(result.out)] == ["a", "b"]
