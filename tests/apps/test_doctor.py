"""`bridge test` checks what this workspace's deploy will need on each server."""
from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import write_config
from tests.sshd import SSHServer
from tests.systemd_server import SystemdServer

FILES = {"Procfile": "web: python3 app.py\n", "package.json": "{}\n", "requirements.txt": "six\n"}


def checks(result) -> dict:
    return {c["name"]: c for c in json.loads(result.out)[0]["checks"]}


def test_the_systemd_server_has_what_the_deploy_needs(bridge, server: SystemdServer, workspace: Path) -> None:
    write_config(workspace, f"workspace: t\nremotes:\n  box: {server.url('root', '/srv/t')}\n")
    for name, text in FILES.items():
        (workspace / name).write_text(text)
    result = bridge("test", "box", "--json", cwd=workspace)
    assert result.code == 0, result
    found = checks(result)
    assert all(found[n]["ok"] for n in ("python3-venv", "npm", "systemd"))


def test_a_server_without_systemd_fails_the_processes_check(bridge, sshd: SSHServer, workspace: Path,
                                                           tmp_path: Path) -> None:
    write_config(workspace, f"workspace: t\nremotes:\n  box: {sshd.url(str(tmp_path / 'srv'))}\n"
                            "deploy:\n  processes: {web: python3 app.py}\n")
    result = bridge("test", "box", "--json", cwd=workspace)
    assert result.code == 1, result
    found = checks(result)
    assert found["systemd"]["ok"] is False and "does not run" in found["systemd"]["detail"]
    assert "npm" not in found


def test_front_nginx_makes_nginx_a_need(bridge, server: SystemdServer, workspace: Path) -> None:
    write_config(workspace, f"workspace: t\nremotes:\n  box: {server.url('root', '/srv/t')}\n"
                            "deploy:\n  front: nginx\n")
    (workspace / "Procfile").write_text("web: python3 app.py\n")
    result = bridge("test", "box", "--json", cwd=workspace)
    assert result.code == 0, result
    assert checks(result)["nginx"]["detail"].endswith("/nginx")
    server.sh("mv /usr/sbin/nginx /usr/sbin/nginx.hidden")
    try:
        missing = bridge("test", "box", "--json", cwd=workspace)
    finally:
        server.sh("mv /usr/sbin/nginx.hidden /usr/sbin/nginx")
    assert missing.code == 1, missing
    assert "apt-get install nginx-light" in checks(missing)["nginx"]["detail"]
