"""What `exec --sandbox` mounts at /workspace: the deployed release, else a snapshot of the tracked files.

Through the real CLI on a local:// target and the real dockerd; never the checkout, its `.git`
or its ignored files, and readable by the sandbox user whatever the checkout's folder mode.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bridge.exec.sandbox.snapshot import tracked_snapshot
from tests.exec.sandbox_env import engine  # noqa: F401 - fixture

LIST = "cd /workspace && ls -A | sort | tr '\\n' ' '; cat app.py"


def git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


def checkout(folder: Path) -> Path:
    """A bridge workspace with a tracked app.py, an ignored .env and an untracked note."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bridge.yaml").write_text(f"workspace: w\nremotes:\n  here: {{url: \"local://{folder}.target\"}}\n")
    (folder / ".gitignore").write_text(".env\n")
    (folder / "app.py").write_text("committed\n")
    git(folder, "init", "-q")
    git(folder, "add", "-A")
    git(folder, "commit", "-qm", "first")
    (folder / ".env").write_text("TOKEN=hunter2\n")
    (folder / "note.txt").write_text("untracked\n")
    return folder


def test_tracked_files_are_seen_never_git_nor_ignored(engine, bridge, tmp_path: Path) -> None:
    ws = checkout(tmp_path / "ws")
    (ws / "app.py").write_text("changed, not committed\n")
    result = bridge("exec", "--sandbox", "--no-reuse", "--", "sh", "-c", LIST, cwd=ws)
    assert result.code == 0, result
    assert result.out == ".gitignore app.py bridge.yaml changed, not committed\n", result
    assert "hunter2" not in result.out


def test_a_checkout_in_a_0700_folder_with_umask_077_is_readable(engine, bridge, tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        ws = checkout(tmp_path / "private" / "ws")
    finally:
        os.umask(old)
    (tmp_path / "private").chmod(0o700)
    ws.chmod(0o700)
    assert (ws / "app.py").stat().st_mode & 0o077 == 0
    result = bridge("exec", "--sandbox", "--no-reuse", "--", "sh", "-c", "id -u; cat /workspace/app.py", cwd=ws)
    assert (result.code, result.out) == (0, "65534\ncommitted\n"), result


def test_the_deployed_release_is_mounted_once_there_is_one(engine, bridge, tmp_path: Path) -> None:
    ws = checkout(tmp_path / "ws")
    assert bridge("push", cwd=ws).code == 0
    (ws / "app.py").write_text("edited after the deploy\n")
    result = bridge("exec", "--sandbox", "--no-reuse", "--", "sh", "-c", LIST, cwd=ws)
    assert result.code == 0, result
    assert "committed\n" in result.out and ".git " not in result.out and ".env" not in result.out, result


def test_the_pooled_path_serves_the_snapshot(engine, bridge, tmp_path: Path) -> None:
    ws = checkout(tmp_path / "ws")
    with (ws / "bridge.yaml").open("a") as f:
        f.write("exec:\n  sandbox: {pool: 1}\n")
    first = bridge("exec", "--sandbox", "--", "cat", "/workspace/app.py", cwd=ws)
    second = bridge("exec", "--sandbox", "--", "cat", "/workspace/app.py", "/workspace/.env", cwd=ws)
    assert (first.code, first.out) == (0, "committed\n"), first
    assert second.code == 1 and second.out == "committed\n" and "No such file" in second.err, second
    assert bridge("exec", "--sandbox", "--", "test", "-e", "/workspace/.git", cwd=ws).code == 1


def test_a_snapshot_is_reused_while_the_tree_is_unchanged(home, tmp_path: Path) -> None:
    ws = checkout(tmp_path / "ws")
    cache = tmp_path / "cache"
    cache.mkdir()
    first = tracked_snapshot(ws, cache)
    assert tracked_snapshot(ws, cache) == first
    assert sorted(p.name for p in first.iterdir()) == [".gitignore", "app.py", "bridge.yaml"]
    (ws / "app.py").write_text("v2\n")
    second = tracked_snapshot(ws, cache)
    assert second != first and (second / "app.py").read_text() == "v2\n"
    assert (first / "app.py").read_text() == "committed\n"
    staged = subprocess.run(["git", "-C", str(ws), "diff", "--cached", "--name-only"], capture_output=True, text=True)
    assert staged.stdout == ""  # the user's index is untouched: app.py is still unstaged


def test_a_subfolder_workspace_sees_its_own_folder(home, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "svc").mkdir(parents=True)
    (repo / "svc" / "app.py").write_text("in svc\n")
    (repo / "top.txt").write_text("top\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    snapshot = tracked_snapshot(repo / "svc", tmp_path)
    assert snapshot.name == "svc" and (snapshot / "app.py").read_text() == "in svc\n"


def test_outside_a_git_repo_nothing_is_mounted(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    assert tracked_snapshot(tmp_path / "plain", tmp_path) is None
