"""`kind: git` remotes given as a local path, file:// or local:// URL, and the server's repo.git HEAD."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.sync.test_push import commit, git


@pytest.mark.parametrize("spell", ["{}", "file://{}", "local://{}"])
def test_a_local_git_remote_takes_a_path_or_file_url(bridge, workspace: Path, tmp_path: Path, spell: str) -> None:
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    git(workspace, "init", "-q", "-b", "main")
    write_config(workspace, f"workspace: app\ndefault: box\nremotes:\n  box: local://{tmp_path / 'srv'}\n")
    sha = commit(workspace, {"a.txt": "1\n"}, "first")
    added = bridge("remote", "add", "origin", spell.format(origin), "--kind", "git", cwd=workspace)
    assert added.code == 0, added
    pushed = bridge("push", "origin", cwd=workspace)
    assert pushed.code == 0, pushed
    assert git(workspace, "--git-dir", str(origin), "rev-parse", "refs/heads/main") == sha
    status = bridge("status", "origin", "--json", cwd=workspace)
    assert status.code == 0, status


def test_the_servers_head_follows_the_deployed_branch(bridge, workspace: Path, tmp_path: Path) -> None:
    root = tmp_path / "srv"
    git(workspace, "init", "-q", "-b", "trunk")
    write_config(workspace, f"workspace: app\ndefault: box\nremotes:\n  box: local://{root}\n")
    commit(workspace, {"a.txt": "1\n"}, "first")
    assert bridge("init", cwd=workspace).code == 0
    assert bridge("push", cwd=workspace).code == 0
    assert git(workspace, "--git-dir", str(root / "repo.git"), "symbolic-ref", "HEAD") == "refs/heads/trunk"
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(root / "repo.git"), str(clone)], check=True)
    assert (clone / "a.txt").read_text() == "1\n"
