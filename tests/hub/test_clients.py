"""Clients unchanged through the hub: --tty, shell, pull, rollback, --sandbox and a mixed fan-out, each beside the
same command over plain ssh to the same sshd (remote `direct`), with a real agent in between."""
from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

from tests.conftest import BRIDGE
from tests.exec.sandbox_env import engine  # noqa: F401 - fixture
from tests.hub.test_api import _hub_public_key
from tests.hub.test_remote import Scene, _trust, scene  # noqa: F401 - the fixture
from tests.sync.test_push import commit, git

NO_REUSE = {"BRIDGE_NO_REUSE": "1"}


def _on_terminal(scene: Scene, *args: str, typed: bytes = b"", wait_for: bytes = b"") -> tuple[int, bytes]:
    """Run bridge on a real PTY; once `wait_for` shows (when given), type `typed`; returns (exit code, output)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([*BRIDGE, *args], cwd=scene.workspace, stdin=slave, stdout=slave, stderr=slave,
                            env={**scene.agent.home.env, "TERM": "xterm"})
    os.close(slave)
    output, sent, deadline = b"", not typed, time.monotonic() + 60
    while time.monotonic() < deadline:
        if not sent and wait_for in output:
            os.write(master, typed)
            sent = True
        if not select.select([master], [], [], 0.2)[0]:
            if proc.poll() is not None:
                break
            continue
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its side of the PTY
            break
        if not data:
            break
        output += data
    os.close(master)
    return proc.wait(30), output


def test_exec_tty_through_the_hub_gets_a_terminal_and_the_exit_code(scene: Scene) -> None:
    _trust(scene)
    for remote in ("edge", "direct"):
        code, output = _on_terminal(scene, "exec", "--tty", "--on", remote, "--", "sh", "-c",
                                    "test -t 0 && test -t 1 && echo on-a-tty; exit 5")
        assert (code, b"on-a-tty" in output) == (5, True), (remote, output)


def test_shell_through_the_hub_echoes_what_is_typed_and_returns_its_exit_code(scene: Scene) -> None:
    _trust(scene)
    code, output = _on_terminal(scene, "shell", "edge", typed=b"echo typed-$((6*7))\rexit 7\r", wait_for=b"# ")
    assert code == 7, output
    assert b"echo typed-$((6*7))" in output  # the remote tty echoed the keys
    assert b"typed-42" in output  # and the remote shell ran them


def test_pull_and_rollback_through_the_hub(scene: Scene, tmp_path: Path) -> None:
    _trust(scene)
    assert scene("init").code == 0
    first = git(scene.workspace, "rev-parse", "HEAD")
    assert scene("push", "edge").code == 0
    commit(scene.workspace, {"app/main.py": "print('v2')\n"}, "second")
    assert scene("push", "edge").code == 0
    assert (scene.deploy / "current" / "app" / "main.py").read_text() == "print('v2')\n"

    rolled = scene("rollback", "edge")
    assert rolled.code == 0, rolled
    assert (scene.deploy / "current" / "app" / "main.py").read_text() == "print('v1')\n"
    assert first[:12] in scene("status", "edge", "--json").out

    clone = tmp_path / "server-clone"  # someone commits on the server
    repo = next(scene.deploy.glob("**/*.git"))
    subprocess.run(["git", "clone", "-q", "-b", "main", str(repo), str(clone)], check=True)
    theirs = commit(clone, {"server.txt": "from the server\n"}, "server change")
    git(clone, "push", "-q", "origin", "main")
    pulled = scene("pull", "edge")
    assert pulled.code == 0, pulled
    assert "fast-forwarded 1 commit" in pulled.out
    assert git(scene.workspace, "rev-parse", "HEAD") == theirs
    assert (scene.workspace / "server.txt").read_text() == "from the server\n"


def test_fan_out_across_an_agent_and_an_ssh_host_has_one_shape(scene: Scene) -> None:
    """A group of the agent and an ssh host answers exactly as a group of two ssh hosts does."""
    _trust(scene)
    config = scene.workspace / "bridge.yaml"
    direct = scene.server.url(str(scene.deploy))
    config.write_text(config.read_text().replace("remotes:\n", f"remotes:\n  edge2: {{url: \"{direct}\"}}\n")
                      + "groups:\n  mixed: [edge, direct]\n  plain: [edge2, direct]\n")
    script = 'echo "out of $0"; echo err >&2; exit 4'
    mixed = scene("exec", "--on", "mixed", "--", "sh", "-c", script)
    plain = scene("exec", "--on", "plain", "--", "sh", "-c", script)
    assert mixed.code == plain.code == 1, (mixed, plain)  # some host failed
    shape = lambda text: sorted(re.sub(r"\d+\.\d+s", "T", text.replace("edge2", "edge ")).splitlines())  # noqa: E731
    assert shape(mixed.out) == shape(plain.out) and "edge   | out of sh" in mixed.out, (mixed, plain)
    assert shape(mixed.err) == shape(plain.err) and re.search(r"edge +4 +failed", mixed.err), (mixed, plain)


def test_exec_sandbox_through_the_hub(engine, scene: Scene) -> None:  # noqa: F811 - the fixture
    _trust(scene)
    for remote in ("edge", "direct"):
        ran = scene("exec", "--sandbox", "--on", remote, "--", "sh", "-c", 'id -u; cat; exit 3', input="fed\n",
                    env=NO_REUSE)
        assert (ran.code, ran.out) == (3, "65534\nfed\n"), (remote, ran)


def test_api_sandbox_runs_in_the_servers_engine_through_the_agent(engine, scene: Scene) -> None:  # noqa: F811
    with scene.server.authorized_keys.open("a") as keys:  # the hub's own key, unrestricted: it may forward
        keys.write(_hub_public_key(scene.hub) + "\n")
    admin = scene.hub.token("user", "adm", "--role", "admin")
    status, body = scene.hub.api("/api/v1/agents/web1/exec", admin,
                                 {"command": 'id -u; echo "$X"; exit 3', "sandbox": True, "env": {"X": "a b"}})
    assert (status, body["exit_code"], body["stdout"], body["status"]) == (200, 3, "65534\na b\n", "failed"), body
