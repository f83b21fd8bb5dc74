"""`bridge push` end to end: the real main(), real git, a real sshd, the real deploy hook."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import Home, Result, write_config
from tests.sshd import SSHServer

NASTY = "srv 'q' \"d\"; echo pwned"


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True, text=True).stdout.strip()


def commit(folder: Path, files: dict[str, str], message: str = "change") -> str:
    """Write files and commit them; returns the new HEAD sha."""
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", message)
    return git(folder, "rev-parse", "HEAD")


class Root:
    """A deploy root on the (loopback) server, read straight from disk."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def current(self) -> Path:
        return self.path / "current"

    def current_name(self) -> str | None:
        return os.path.basename(os.readlink(self.current)) if self.current.is_symlink() else None

    def releases(self) -> list[str]:
        folder = self.path / "releases"
        return sorted(n for n in os.listdir(folder) if not n.startswith(".")) if folder.is_dir() else []

    def log(self) -> list[dict]:
        path = self.path / ".bridge" / "deploys.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def ref(self, ref: str = "refs/heads/main") -> str:
        proc = subprocess.run(["git", "--git-dir", str(self.path / "repo.git"), "rev-parse", "-q", "--verify", ref],
                              capture_output=True, text=True)
        return proc.stdout.strip()


def setup_workspace(bridge: Callable[..., Result], folder: Path, url: str, extra: str = "") -> Result:
    """git init on `main`, bridge.yaml with remote `prod` at `url`, a first commit, then `bridge init`."""
    git(folder, "init", "-q", "-b", "main")
    write_config(folder, f"workspace: app\ndefault: prod\nremotes:\n  prod: {{url: {json.dumps(url)}}}\n{extra}")
    commit(folder, {"app/main.py": "print('v1')\n", "README": "app\n"}, "first")
    return bridge("init", cwd=folder)


@pytest.fixture
def server_root(tmp_path: Path) -> Root:
    return Root(tmp_path / NASTY)


@pytest.fixture
def ssh_ws(bridge: Callable[..., Result], workspace: Path, sshd: SSHServer, server_root: Root) -> Path:
    """A workspace whose default remote `prod` is the sshd, with a nasty deploy root path; init done."""
    result = setup_workspace(bridge, workspace, sshd.url(str(server_root.path)))
    assert result.code == 0, result
    return workspace


def test_init_prepares_the_server_and_push_deploys_over_ssh(bridge, ssh_ws: Path, server_root: Root) -> None:
    assert (server_root.path / "repo.git" / "HEAD").is_file()
    assert (server_root.path / ".bridge" / "hook.py").is_file()
    sha = git(ssh_ws, "rev-parse", "HEAD")
    result = bridge("push", cwd=ssh_ws)
    assert result.code == 0, result
    assert "ok   checkout" in result.out and f"deployed {sha[:12]}" in result.out
    assert (server_root.current / "app" / "main.py").read_text() == "print('v1')\n"
    assert server_root.ref() == sha
    assert server_root.log()[-1]["result"] == "ok"
    assert not (server_root.path.parent / "pwned").exists()


def test_pushing_the_same_commit_again_deploys_only_with_redeploy(bridge, ssh_ws: Path, server_root: Root) -> None:
    assert bridge("push", cwd=ssh_ws).code == 0
    again = bridge("push", cwd=ssh_ws)
    assert again.code == 0, again
    assert "already deployed" in again.out and "up-to-date" in again.out
    assert len(server_root.releases()) == 1 and len(server_root.log()) == 1
    forced = bridge("push", "--redeploy", cwd=ssh_ws)
    assert forced.code == 0 and "deployed" in forced.out
    assert len(server_root.releases()) == 2 and len(server_root.log()) == 2


def test_incremental_push_ships_only_the_change(bridge, ssh_ws: Path, server_root: Root) -> None:
    assert bridge("push", cwd=ssh_ws).code == 0
    sha = commit(ssh_ws, {"app/main.py": "print('v2')\n"})
    result = bridge("push", cwd=ssh_ws)
    assert result.code == 0, result
    assert "1 written" in result.out
    assert server_root.current_name().endswith(sha[:12])
    assert (server_root.current / "app" / "main.py").read_text() == "print('v2')\n"


def test_dirty_tree_pushes_head_and_lists_what_was_not_shipped(bridge, ssh_ws: Path, server_root: Root) -> None:
    (ssh_ws / "README").write_text("edited\n")
    (ssh_ws / "new.txt").write_text("new\n")
    result = bridge("push", cwd=ssh_ws)
    assert result.code == 0, result
    assert "not shipped (2 uncommitted" in result.out
    assert " M README" in result.out and "?? new.txt" in result.out
    assert (server_root.current / "README").read_text() == "app\n"
    assert not (server_root.current / "new.txt").exists()


def test_no_deploy_pushes_without_a_release(bridge, ssh_ws: Path, server_root: Root) -> None:
    sha = git(ssh_ws, "rev-parse", "HEAD")
    result = bridge("push", "--no-deploy", cwd=ssh_ws)
    assert result.code == 0, result
    assert server_root.ref() == sha and server_root.releases() == []


def test_failed_deploy_step_exits_1_with_the_step_and_its_last_lines(
        bridge, workspace: Path, sshd: SSHServer, server_root: Root) -> None:
    extra = "deploy:\n  commands: [\"echo first-line; echo boom >&2; exit 3\"]\n"
    assert setup_workspace(bridge, workspace, sshd.url(str(server_root.path)), extra).code == 0
    result = bridge("push", cwd=workspace)
    assert result.code == 1, result
    assert "FAIL run: echo first-line" in result.out and "boom" in result.out
    assert "deploy failed at step 'run: echo first-line" in result.err
    assert server_root.current_name() is None and server_root.releases() == []


def test_changed_host_key_is_refused_for_git_traffic_too(bridge, ssh_ws: Path, sshd: SSHServer,
                                                          server_root: Root) -> None:
    sshd.restart(new_host_key=True)
    commit(ssh_ws, {"x": "1\n"})
    result = bridge("push", cwd=ssh_ws)
    assert result.code == 255, result
    assert "host key" in result.err.lower()
    assert server_root.ref() != git(ssh_ws, "rev-parse", "HEAD")


def test_a_remote_reached_via_a_jump_host(bridge, workspace: Path, sshd_factory, server_root: Root) -> None:
    relay, target = sshd_factory(), sshd_factory()
    extra = f"  relay: {{url: {json.dumps(relay.url())}}}\n"
    git(workspace, "init", "-q", "-b", "main")
    write_config(workspace, "workspace: app\ndefault: prod\nremotes:\n"
                 f"  prod: {{url: {json.dumps(target.url(str(server_root.path)))}, via: relay}}\n{extra}")
    sha = commit(workspace, {"a.txt": "a\n"})
    assert bridge("init", cwd=workspace).code == 0
    result = bridge("push", cwd=workspace)
    assert result.code == 0, result
    assert server_root.ref() == sha
    assert relay.accepted_connections() >= 1


def test_group_with_a_plain_git_remote_pushes_both(bridge, workspace: Path, sshd: SSHServer,
                                                   server_root: Root, tmp_path: Path) -> None:
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    extra = (f"  origin: {{url: {json.dumps(str(origin))}, kind: git}}\n"
             "groups:\n  everywhere: [prod, origin]\n")
    assert setup_workspace(bridge, workspace, sshd.url(str(server_root.path)), extra).code == 0
    sha = git(workspace, "rev-parse", "HEAD")
    result = bridge("push", "--on", "everywhere", cwd=workspace)
    assert result.code == 0, result
    assert "push summary" in result.out and "[prod]" in result.out
    assert server_root.ref() == sha and server_root.current_name().endswith(sha[:12])
    assert git(origin, "rev-parse", "refs/heads/main") == sha


def test_branch_names_with_quotes_and_semicolons_deploy(bridge, ssh_ws: Path, server_root: Root) -> None:
    branch = "feat;'x\"$(touch${IFS}pwned)"
    git(ssh_ws, "switch", "-q", "-c", branch)
    sha = commit(ssh_ws, {"b.txt": "b\n"})
    result = bridge("push", cwd=ssh_ws)
    assert result.code == 0, result
    assert server_root.ref(f"refs/heads/{branch}") == sha
    assert not list(Path("/").glob("pwned")) and not (ssh_ws / "pwned").exists()
    assert not (server_root.path / "pwned").exists()


def test_local_default_init_push_exec(bridge, workspace: Path, home: Home) -> None:
    """README's first-run flow: init (local:// default), push, exec in the deployed release."""
    git(workspace, "init", "-q", "-b", "main")
    assert bridge("init", cwd=workspace).code == 0
    commit(workspace, {"app.py": "print('hello from current')\n"})
    result = bridge("push", cwd=workspace)
    assert result.code == 0, result
    root = Root(home.path / ".local/share/bridge/targets/ws")
    assert (root.current / "app.py").is_file()
    ran = bridge("exec", "--", "python", "app.py", cwd=workspace)
    assert ran.code == 0 and ran.out == "hello from current\n", ran
