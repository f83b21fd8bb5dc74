"""The HTTP API: exec through the agent as the hub's own key (the server's guard still decides), roles checked
at the hub first, every decision in the hub's hash-chained audit log."""
from __future__ import annotations

import json
import ssl
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import Home, Result
from tests.hub.conftest import Agent, Hub, wait_for
from tests.security.conftest import bridge_exe, run_as_policy, runner, sec  # noqa: F401 - fixtures
from tests.sshd import SSHServer


@dataclass
class ApiScene:
    hub: Hub
    agent: Agent
    server: SSHServer
    server_log: Path
    operator: str

    def exec(self, body: dict, token: str | None = None, agent: str = "web1") -> tuple[int, dict]:
        return self.hub.api(f"/api/v1/agents/{agent}/exec", token or self.operator, body)


def _hub_public_key(hub: Hub) -> str:
    for line in hub.log.read_text().splitlines():
        if "API runs log in to servers with:" in line:
            return line.split("with: ", 1)[1].strip()
    raise AssertionError("the hub printed no SSH key")


@pytest.fixture
def api(sec: Callable[..., Result], hub: Hub, agent_factory, sshd_factory, tmp_path: Path, runner) -> ApiScene:
    """The server logs in as root, so its no-sudo roles run as `runner` (the guard refuses otherwise)."""
    policy = run_as_policy(tmp_path, runner)
    log = tmp_path / "server-log" / "audit.jsonl"
    server = sshd_factory(authorize=False)
    server.guard_options = ["--policy", str(policy), "--audit", str(log)]
    granted = sec("keys", "add", server.user, "--role", "operator", "--key", _hub_public_key(hub),
                  "--file", str(server.authorized_keys), *server.guard_options)
    assert granted.code == 0, granted
    agent = agent_factory("web1").start(hub.url, hub.token("agent", "web1"), "--ssh", f"127.0.0.1:{server.port}",
                                        "--ssh-user", server.user)
    wait_for(agent.connected, 30)
    return ApiScene(hub, agent, server, log, hub.token("user", "ann", "--role", "operator", "--workspace", "app"))


def test_exec_returns_exit_code_and_separate_output(api: ApiScene) -> None:
    status, body = api.exec({"command": "echo hi; echo err >&2; exit 3", "workspace": "app"})
    assert status == 200, body
    assert {k: body[k] for k in ("exit_code", "stdout", "stderr", "status", "truncated")} == {
        "exit_code": 3, "stdout": "hi\n", "stderr": "err\n", "status": "failed", "truncated": False}
    assert body["duration"] > 0
    server_lines = [json.loads(line) for line in api.server_log.read_text().splitlines()]
    assert server_lines[-1]["decision"] == "allowed"  # the server's guard saw and allowed it too


def test_env_timeout_and_truncation(api: ApiScene) -> None:
    status, body = api.exec({"command": "echo $GREETING", "workspace": "app", "env": {"GREETING": "a b'c"}})
    assert (status, body["stdout"]) == (200, "a b'c\n")
    status, body = api.exec({"command": "sleep 30", "workspace": "app", "timeout": 1})
    assert (status, body["exit_code"], body["status"]) == (200, 124, "timeout")
    status, body = api.exec({"command": "head -c 3000000 /dev/zero", "workspace": "app"})
    assert (status, body["truncated"], body["status"], len(body["stdout"])) == (200, True, "output_truncated", 1 << 20)


def test_the_hub_refuses_before_anything_reaches_the_server(api: ApiScene) -> None:
    before = api.server_log.read_text() if api.server_log.exists() else ""
    assert api.exec({"command": "sudo id", "workspace": "app"})[0] == 403
    assert api.exec({"command": "true", "workspace": "other"})[1]["error"] == "workspace `other` is not one of app"
    viewer = api.hub.token("user", "vic", "--role", "viewer")
    assert api.exec({"command": "true"}, token=viewer) == (403, {"error": "role viewer may not exec",
                                                                   "status": "denied"})
    assert (api.server_log.read_text() if api.server_log.exists() else "") == before
    assert api.exec({"command": ""})[0] == 400
    assert api.exec({"command": "true", "workspace": "app"}, agent="nobody")[0] == 404


def test_the_servers_guard_still_decides(api: ApiScene, sec: Callable[..., Result]) -> None:
    api.server.authorized_keys.write_text("")
    assert sec("keys", "add", api.server.user, "--role", "viewer", "--key", _hub_public_key(api.hub),
               "--file", str(api.server.authorized_keys), *api.server.guard_options).code == 0
    status, body = api.exec({"command": "id", "workspace": "app"})
    assert (status, body["exit_code"]) == (200, 126)


def test_streaming_ndjson(api: ApiScene) -> None:
    hub = api.hub
    context = ssl.create_default_context(cafile=str(hub.state / "tls.crt"))
    context.check_hostname = False
    request = urllib.request.Request(f"https://{hub.address}/api/v1/agents/web1/exec/stream", method="POST",
                                     data=json.dumps({"command": "echo one; echo two >&2; exit 4",
                                                      "workspace": "app"}).encode(),
                                     headers={"Authorization": f"Bearer {api.operator}"})
    with urllib.request.urlopen(request, context=context, timeout=60) as response:
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.read().splitlines()]
    out = "".join(line.get("stdout", "") for line in lines)
    err = "".join(line.get("stderr", "") for line in lines)
    assert (out, err) == ("one\n", "two\n")
    assert lines[-1]["exit_code"] == 4 and lines[-1]["status"] == "failed"


def test_every_decision_is_in_the_hubs_chained_audit_without_tokens(api: ApiScene, bridge, home: Home) -> None:
    api.exec({"command": "true", "workspace": "app"})
    api.exec({"command": "sudo id", "workspace": "app"})
    admin = api.hub.token("user", "root", "--role", "admin")
    status, body = api.hub.api("/api/v1/audit", admin)
    assert status == 200
    runs = [e for e in body["entries"] if e["action"] == "hub.exec"]
    assert [(e["user"], e["command"], e["decision"]) for e in runs] == [("ann", "true", "allowed"),
                                                                        ("ann", "sudo id", "refused")]
    assert runs[0]["exit_code"] == 0 and runs[0]["host"] == "web1"
    log = api.hub.state / "audit.jsonl"
    assert bridge("audit", "verify", str(log)).code == 0
    text = log.read_text()
    assert api.operator not in text and admin not in text
    assert api.hub.api("/api/v1/audit", api.operator)[0] == 200  # operators hold `audit`
    assert api.hub.api("/api/v1/audit", "nope")[0] == 401


def test_openapi_and_docs(api: ApiScene) -> None:
    hub = api.hub
    context = ssl.create_default_context(cafile=str(hub.state / "tls.crt"))
    context.check_hostname = False
    with urllib.request.urlopen(f"https://{hub.address}/openapi.json", context=context, timeout=30) as response:
        schema = json.loads(response.read())
    assert {"/api/v1/agents", "/api/v1/agents/{agent}/exec", "/api/v1/agents/{agent}/exec/stream",
            "/api/v1/audit"} <= set(schema["paths"])
    with urllib.request.urlopen(f"https://{hub.address}/docs", context=context, timeout=30) as response:
        assert b"/api/v1/agents/{agent}/exec" in response.read()
