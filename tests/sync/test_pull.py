"""`bridge pull`: commits made on the server come back; local work is never discarded."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.sync.test_push import Root, commit, git, server_root, ssh_ws  # noqa: F401 - fixtures


def server_commit(root: Root, tmp_path: Path, files: dict[str, str], name: str = "server-clone") -> str:
    """Someone commits on the server: clone repo.git there, commit, push back with --no-verify semantics."""
    clone = tmp_path / name
    if not clone.exists():
        subprocess.run(["git", "clone", "-q", "-b", "main", str(root.path / "repo.git"), str(clone)], check=True)
    git(clone, "pull", "-q", "--ff-only")
    sha = commit(clone, files, "server change")
    git(clone, "push", "-q", "origin", "main")
    return sha


@pytest.fixture
def pushed(bridge, ssh_ws: Path) -> Path:
    assert bridge("push", cwd=ssh_ws).code == 0
    return ssh_ws


def test_pull_fast_forwards_to_the_servers_commit(bridge, pushed: Path, server_root: Root, tmp_path: Path) -> None:
    sha = server_commit(server_root, tmp_path, {"server.txt": "from server\n"})
    result = bridge("pull", cwd=pushed)
    assert result.code == 0, result
    assert "fast-forwarded 1 commit" in result.out
    assert git(pushed, "rev-parse", "HEAD") == sha and (pushed / "server.txt").read_text() == "from server\n"
    assert "already up to date" in bridge("pull", cwd=pushed).out


def test_pull_merges_when_both_sides_moved(bridge, pushed: Path, server_root: Root, tmp_path: Path) -> None:
    theirs = server_commit(server_root, tmp_path, {"server.txt": "s\n"})
    ours = commit(pushed, {"local.txt": "l\n"})
    result = bridge("pull", cwd=pushed)
    assert result.code == 0, result
    assert "merged 1 commit" in result.out
    parents = git(pushed, "rev-list", "--parents", "-n", "1", "HEAD").split()[1:]
    assert set(parents) == {ours, theirs}


def test_pull_refuses_to_overwrite_dirty_files_and_lists_them(bridge, pushed: Path, server_root: Root,
                                                               tmp_path: Path) -> None:
    server_commit(server_root, tmp_path, {"README": "server readme\n", "new.txt": "server new\n"})
    (pushed / "README").write_text("my unsaved edit\n")
    (pushed / "new.txt").write_text("my untracked file\n")
    head = git(pushed, "rev-parse", "HEAD")
    result = bridge("pull", cwd=pushed)
    assert result.code == 1, result
    assert "would overwrite local changes to: README, new.txt" in result.err
    assert git(pushed, "rev-parse", "HEAD") == head
    assert (pushed / "README").read_text() == "my unsaved edit\n"
    assert (pushed / "new.txt").read_text() == "my untracked file\n"


def test_conflicts_are_reported_and_the_merge_aborted(bridge, pushed: Path, server_root: Root,
                                                     tmp_path: Path) -> None:
    server_commit(server_root, tmp_path, {"README": "server side\n"})
    ours = commit(pushed, {"README": "local side\n"})
    (pushed / "unrelated.txt").write_text("dirty but safe\n")
    result = bridge("pull", cwd=pushed)
    assert result.code == 1, result
    assert "merge conflicts in README" in result.err and "git merge refs/bridge/remotes/prod/main" in result.err
    assert git(pushed, "rev-parse", "HEAD") == ours
    assert not (pushed / ".git" / "MERGE_HEAD").exists()
    assert (pushed / "README").read_text() == "local side\n"
    assert (pushed / "unrelated.txt").read_text() == "dirty but safe\n"
