"""A hub:// remote is an ordinary SSH remote: exec, push, status and test through hub and agent to a real sshd."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import Home, Result
from tests.hub.conftest import Agent, Hub, wait_for
from tests.sshd import SSHServer
from tests.sync.test_push import commit, git


@dataclass
class Scene:
    """A workspace with remote `edge` (hub://, the agent's sshd) and `direct` (ssh:// to the same sshd)."""

    workspace: Path
    deploy: Path
    server: SSHServer
    hub: Hub
    agent: Agent
    run: Callable[..., Result]

    def __call__(self, *args: str, **kw) -> Result:
        return self.run(*args, cwd=self.workspace, **kw)


@pytest.fixture
def scene(bridge, home: Home, hub: Hub, agent_factory, sshd_factory, tmp_path: Path) -> Scene:
    server = sshd_factory(trusted=True)
    agent = agent_factory("web1").start(hub.url, hub.token("agent", "web1"), "--ssh", f"127.0.0.1:{server.port}")
    return workspace_scene(bridge, home, hub, server, agent, "web1", tmp_path)


def workspace_scene(bridge, home: Home, hub: Hub, server: SSHServer, agent: Agent, name: str,
                    tmp_path: Path) -> Scene:
    """Once `agent` (named `name`, in front of `server`) is connected: user ann logged in, the workspace made."""
    wait_for(agent.connected, 30)
    token = hub.token("user", "ann", "--role", "operator", "--workspace", "app")
    assert bridge("hub", "login", f"127.0.0.1:{hub.port}", "--token", token).code == 0
    deploy, workspace = tmp_path / "deploy", tmp_path / "ws"
    deploy.mkdir()  # exec refuses a remote path that does not exist; `bridge init` prepares the rest
    workspace.mkdir()
    git(workspace, "init", "-q", "-b", "main")
    (workspace / "bridge.yaml").write_text(
        f"workspace: app\ndefault: edge\nremotes:\n"
        f"  edge: {{url: \"hub://127.0.0.1:{hub.port}/{name}{deploy}\", identity: {json.dumps(str(home.key))}}}\n"
        f"  direct: {{url: \"{server.url(str(deploy))}\"}}\n")
    commit(workspace, {"app/main.py": "print('v1')\n"}, "first")
    return Scene(workspace, deploy, server, hub, agent, bridge)


def _trust(scene: Scene) -> None:
    result = scene("test", "--trust", "edge")
    assert result.code == 0, result


def test_the_agents_host_key_must_be_trusted_first_then_exec_works(scene: Scene) -> None:
    refused = scene("exec", "--on", "edge", "--", "true")
    assert refused.code == 255
    assert "host key for hub://" in refused.err and "bridge test --trust edge" in refused.err
    _trust(scene)
    ran = scene("exec", "--on", "edge", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    direct = scene("exec", "--on", "direct", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (ran.code, ran.out, ran.err) == (direct.code, direct.out, direct.err) == (3, "out\n", "err\n")


def test_a_changed_host_key_behind_the_agent_is_refused(scene: Scene) -> None:
    _trust(scene)
    scene.server.restart(new_host_key=True)
    result = scene("exec", "--on", "edge", "--", "true")
    assert result.code == 255 and "CHANGED" in result.err


def test_push_and_status_through_the_hub(scene: Scene) -> None:
    _trust(scene)
    assert scene("init").code == 0
    sha = git(scene.workspace, "rev-parse", "HEAD")
    pushed = scene("push", "edge")
    assert pushed.code == 0, pushed
    assert f"deployed {sha[:12]}" in pushed.out
    assert (scene.deploy / "current" / "app" / "main.py").read_text() == "print('v1')\n"
    status = scene("status", "edge", "--json")
    assert status.code == 0, status
    assert sha[:12] in status.out


def test_bridge_test_checks_a_hub_remote(scene: Scene) -> None:
    _trust(scene)
    result = scene("test", "edge")
    assert result.code == 0, result


def test_a_workspace_outside_the_token_is_refused_at_the_hub(scene: Scene) -> None:
    _trust(scene)
    text = (scene.workspace / "bridge.yaml").read_text().replace("workspace: app", "workspace: other")
    (scene.workspace / "bridge.yaml").write_text(text)
    result = scene("exec", "--on", "edge", "--", "true")
    assert result.code == 255
    assert "workspace `other` is not one of app" in result.err and "hint:" in result.err


def test_an_offline_agent_is_one_line(scene: Scene) -> None:
    _trust(scene)
    scene.agent.stop()
    result = scene("exec", "--on", "edge", "--", "true")
    assert result.code == 255
    assert "agent `web1` is not connected" in result.err and "bridge agent status" in result.err


def test_no_login_says_how_to_log_in(scene: Scene, home: Home) -> None:
    for saved in (Path(home.env["XDG_CONFIG_HOME"]) / "bridge" / "hub").iterdir():
        saved.unlink()
    result = scene("exec", "--on", "edge", "--", "true")
    assert result.code == 255 and f"bridge hub login {scene.hub.address}" in result.err
