"""`bridge push --wip`: the work tree ships as a snapshot; branch, index, stash and files stay exactly as they were."""
from __future__ import annotations

import hashlib
from pathlib import Path

from tests.sync.test_push import Root, git, server_root, ssh_ws  # noqa: F401 - fixtures


def local_state(folder: Path) -> dict:
    """Everything --wip promises not to touch."""
    files = {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in folder.rglob("*") if p.is_file() and ".git" not in p.parts}
    return {"status": git(folder, "status", "--porcelain", "--untracked-files=all"),
            "stash": git(folder, "stash", "list"), "head": git(folder, "rev-parse", "HEAD"),
            "branch": git(folder, "symbolic-ref", "HEAD"), "refs": git(folder, "for-each-ref"),
            "index": hashlib.sha256((folder / ".git" / "index").read_bytes()).hexdigest(), "files": files}


def make_messy(folder: Path) -> None:
    """A staged edit, an unstaged edit, an untracked file, an ignored file and a stash entry."""
    (folder / ".gitignore").write_text("secret.env\n")
    git(folder, "add", ".gitignore")
    git(folder, "commit", "-q", "-m", "ignore")
    (folder / "README").write_text("stashed\n")
    git(folder, "stash", "-q")
    (folder / "app" / "main.py").write_text("print('staged')\n")
    git(folder, "add", "app/main.py")
    (folder / "app" / "main.py").write_text("print('unstaged on top')\n")
    (folder / "untracked.txt").write_text("untracked\n")
    (folder / "secret.env").write_text("TOKEN=1\n")


def test_wip_ships_the_work_tree_and_leaves_everything_local_untouched(bridge, ssh_ws: Path,
                                                                        server_root: Root) -> None:
    make_messy(ssh_ws)
    before = local_state(ssh_ws)
    result = bridge("push", "--wip", cwd=ssh_ws)
    assert result.code == 0, result
    assert local_state(ssh_ws) == before
    assert (server_root.current / "app/main.py").read_text() == "print('unstaged on top')\n"
    assert (server_root.current / "untracked.txt").read_text() == "untracked\n"
    assert not (server_root.current / "secret.env").exists()
    assert server_root.ref("refs/heads/main") == ""  # the branch itself was not pushed
    snapshot = server_root.ref("refs/bridge/wip/main")
    assert snapshot and git(ssh_ws, "rev-parse", "HEAD") in git(server_root.path / "repo.git", "rev-list",
                                                                 "--parents", "-n", "1", snapshot)


def test_a_second_wip_push_replaces_the_first(bridge, ssh_ws: Path, server_root: Root) -> None:
    (ssh_ws / "a.txt").write_text("one\n")
    assert bridge("push", "--wip", cwd=ssh_ws).code == 0
    (ssh_ws / "a.txt").write_text("two\n")
    result = bridge("push", "--wip", cwd=ssh_ws)
    assert result.code == 0, result
    assert (server_root.current / "a.txt").read_text() == "two\n"
    assert git(server_root.path / "repo.git", "for-each-ref", "refs/bridge/incoming") == ""
