"""bridge's own client through a key that `bridge keys add` restricted: the guard sees the exact requests
it matches word for word (`git-receive-pack PATH`), so push keeps its workspace rule and its audit
action, and exec (with and without a timeout) runs and refuses as it does from plain ssh."""
from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Result, write_config
from tests.security.conftest import Guarded, owned_pair


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def roots(guarded: Guarded) -> Iterator[tuple[Path, Path]]:
    """Two deploy roots the account owns: the key is granted the first only."""
    with owned_pair(guarded, "bridge-guarded-ws-") as pair:
        yield pair


@pytest.fixture
def ws(workspace: Path, guarded: Guarded, roots: tuple[Path, Path]) -> Path:
    """A workspace with one commit; remote `prod` is the granted root, `other` the one outside the grant,
    `box` the account with no deploy root (whose exec prelude sets no PATH)."""
    base = f"ssh://{guarded.account.name}@{guarded.server.host}:{guarded.server.port}"
    key = guarded.home.key
    _git(workspace, "init", "-q", "-b", "main")
    write_config(workspace, "workspace: app\ndefault: prod\nremotes:\n"
                            f"  prod: {{url: {json.dumps(base + str(roots[0]))}, identity: {json.dumps(str(key))}}}\n"
                            f"  other: {{url: {json.dumps(base + str(roots[1]))}, identity: {json.dumps(str(key))}}}\n"
                            f"  box: {{url: {json.dumps(base)}, identity: {json.dumps(str(key))}}}\n")
    (workspace / "app.py").write_text("print('v1')\n")
    _git(workspace, "add", "-A")
    _git(workspace, "commit", "-q", "-m", "first")
    return workspace


def test_push_through_a_guarded_key_is_a_push_to_the_guard(guarded: Guarded, bridge: Callable[..., Result],
                                                          ws: Path, roots: tuple[Path, Path]) -> None:
    mine, other = roots
    guarded.grant("operator", "--workspace", str(mine))
    pushed = bridge("push", cwd=ws)
    assert pushed.code == 0, pushed
    assert (mine / "current" / "app.py").read_text() == "print('v1')\n"
    refused = bridge("push", "other", cwd=ws)
    assert refused.code != 0 and "rule operator.workspaces" in refused.err, refused
    assert not (other / "current").exists()
    pushes = [(e["action"], e["decision"], e.get("workspace")) for e in guarded.entries() if e["action"] == "push"]
    assert pushes == [("push", "allowed", str(mine / "repo.git")), ("push", "denied", str(other / "repo.git"))]


def test_exec_through_a_guarded_key_runs_and_refuses_as_plain_ssh_does(guarded: Guarded, ws: Path,
                                                                      bridge: Callable[..., Result]) -> None:
    guarded.grant("operator")
    for timeout in ([], ["--timeout", "20"]):
        ran = bridge("exec", "--on", "box", *timeout, "--", "echo hi # a comment last", cwd=ws)
        assert (ran.code, ran.out) == (0, "hi\n"), ran
        refused = bridge("exec", "--on", "box", *timeout, "--", "sudo -n id", cwd=ws)
        assert refused.code == 126 and "rule operator.no-sudo" in refused.err, refused
    decisions = [(e["action"], e["decision"]) for e in guarded.entries()]
    assert decisions == [("exec", "allowed"), ("exec", "denied")] * 2, decisions


def test_exec_on_a_deployed_root_puts_its_venv_first_for_a_role_without_sudo(guarded: Guarded, ws: Path,
                                                                               roots: tuple[Path, Path],
                                                                               bridge: Callable[..., Result]) -> None:
    """The prelude's `[ -d ROOT ]` and `PATH=ROOT/current/.venv/bin:$PATH` pass the guard when ROOT is inside
    the key's workspaces; the same prelude for a root outside them is still a PATH change that needs sudo."""
    mine, other = roots
    guarded.grant("operator", "--workspace", str(mine))
    assert bridge("push", cwd=ws).code == 0
    pushed = len(guarded.entries())
    tool = mine / "current" / ".venv" / "bin" / "hello-from-venv"
    tool.parent.mkdir(parents=True)
    tool.write_text("#!/bin/sh\necho \"venv $VIRTUAL_ENV in $PWD\"\n")
    tool.chmod(0o755)
    ran = bridge("exec", "--on", "prod", "--", "hello-from-venv", cwd=ws)
    assert (ran.code, ran.out) == (0, f"venv {mine}/current/.venv in {mine}/current\n"), ran
    refused = bridge("exec", "--on", "other", "--", "true", cwd=ws)
    assert refused.code == 126 and "rule operator.no-sudo" in refused.err, refused
    decisions = [(e["action"], e["decision"]) for e in guarded.entries()[pushed:]]
    assert decisions == [("exec", "allowed"), ("exec", "denied")], decisions
