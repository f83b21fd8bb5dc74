"""deploy.shared: data that lives outside releases, linked into each one, surviving pushes and pruning."""
from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import write_config
from tests.sync.test_push import commit, git

CONFIG = """workspace: app
default: box
remotes:
  box: local://{root}
deploy:
  keep_releases: 2
  shared: [instance, .env, data/uploads/]
  commands: ["echo $BRIDGE_SHA >> instance/deploys.log"]
"""


def test_shared_data_survives_pushes_and_pruning(bridge, workspace: Path, tmp_path: Path) -> None:
    root = tmp_path / "srv"
    git(workspace, "init", "-q", "-b", "main")
    write_config(workspace, CONFIG.format(root=root))
    commit(workspace, {"app.py": "print(1)\n", "instance/seed.txt": "from git\n"}, "first")
    assert bridge("init", cwd=workspace).code == 0
    shas = []
    for n in range(4):
        if n:
            shas.append(commit(workspace, {"app.py": f"print({n + 10})\n"}))
        else:
            shas.append(git(workspace, "rev-parse", "HEAD"))
        result = bridge("push", cwd=workspace)
        assert result.code == 0, result
        if n == 0:
            (root / "current" / ".env").write_text("SECRET=kept\n")
            (root / "current" / "data" / "uploads" / "a.png").write_bytes(b"png")
    current = root / "current"
    assert (current / "instance" / "deploys.log").read_text().split() == shas
    assert (current / "instance" / "seed.txt").read_text() == "from git\n"
    assert (current / ".env").read_text() == "SECRET=kept\n"
    assert (current / "data" / "uploads" / "a.png").read_bytes() == b"png"
    assert len(os.listdir(root / "releases")) == 2
    for name in ("instance", ".env", "data/uploads"):
        assert os.readlink(current / name) == str(root / "shared" / name)


def test_a_shared_entry_outside_the_release_is_refused(bridge, workspace: Path, tmp_path: Path) -> None:
    root = tmp_path / "srv"
    git(workspace, "init", "-q", "-b", "main")
    write_config(workspace, f"workspace: app\ndefault: box\nremotes:\n  box: local://{root}\n"
                            "deploy:\n  shared: [../escape]\n")
    commit(workspace, {"app.py": "print(1)\n"}, "first")
    assert bridge("init", cwd=workspace).code == 0
    result = bridge("push", cwd=workspace)
    assert result.code == 1 and "deploy.shared entry '../escape'" in result.out + result.err
    assert not (root / "current").exists() and not (tmp_path / "escape").exists()
