"""`bridge ps / logs / restart / stop / start` against processes under a real systemd."""
from __future__ import annotations

import json
import secrets
from pathlib import Path

from tests.apps.conftest import AppWorkspace, deploy_root
from tests.apps.test_processes import main_pid, wait_new_pid
from tests.conftest import write_config
from tests.sync.test_push import commit, git
from tests.systemd_server import APP_USER, SystemdServer


def ps(ws: AppWorkspace, *args: str) -> list[dict]:
    result = ws.run("ps", *args, "--json")
    assert result.code == 0, result
    return json.loads(result.out)


def test_ps_shows_state_pid_release_and_restarts(app_ws: AppWorkspace) -> None:
    assert app_ws.run("push").code == 0
    assert app_ws.serving("v1")
    [host] = ps(app_ws)
    [web] = host["processes"]
    assert (host["host"], web["process"], web["state"]) == ("prod", "web", "active/running")
    assert web["pid"] == main_pid(app_ws) and web["release"] == app_ws.current() and web["since"]
    assert web["restarts"] == 0
    app_ws.server.sh('kill -9 "$1"', str(web["pid"]))
    assert wait_new_pid(app_ws, web["pid"])
    assert ps(app_ws)[0]["processes"][0]["restarts"] == 1
    table = app_ws.run("ps")
    assert table.code == 0 and "active/running" in table.out and app_ws.current() in table.out


def test_logs_show_what_the_app_printed(app_ws: AppWorkspace) -> None:
    assert app_ws.run("push").code == 0
    assert app_ws.serving("v1")
    result = app_ws.run("logs", "prod", "web", "-n", "20")
    assert result.code == 0, result
    assert "app v1 listening on " in result.out  # behind the nginx front, on its slot's own port


def test_stop_start_and_restart(app_ws: AppWorkspace) -> None:
    assert app_ws.run("push").code == 0
    assert app_ws.serving("v1")
    stopped = app_ws.run("stop", "prod", "web")
    assert stopped.code == 0, stopped
    assert app_ws.get()[0] == 0
    assert ps(app_ws)[0]["processes"][0]["state"] == "inactive/dead"
    assert app_ws.run("start").code == 0
    assert app_ws.serving("v1")
    pid = main_pid(app_ws)
    assert app_ws.run("restart", "prod").code == 0
    assert wait_new_pid(app_ws, pid)
    unknown = app_ws.run("restart", "prod", "nosuch")
    assert unknown.code == 1 and "no process 'nosuch'" in unknown.err


def test_app_commands_work_across_a_group(bridge, server: SystemdServer, workspace: Path) -> None:
    name = "g" + secrets.token_hex(4)
    roots = {"root": deploy_root("root", name), APP_USER: deploy_root(APP_USER, name)}
    git(workspace, "init", "-q", "-b", "main")
    write_config(workspace, f"workspace: {name}\nremotes:\n"
                            f"  a: {server.url('root', roots['root'])}\n  b: {server.url(APP_USER, roots[APP_USER])}\n"
                            "groups:\n  web: [a, b]\n")
    commit(workspace, {"Procfile": "worker: sh -c 'echo worker up; exec sleep 600'\n"}, "first")
    try:
        assert bridge("init", cwd=workspace).code == 0
        pushed = bridge("push", "--on", "web", cwd=workspace)
        assert pushed.code == 0, pushed
        result = bridge("ps", "--on", "web", "--json", cwd=workspace)
        assert result.code == 0, result
        hosts = {h["host"]: h["processes"] for h in json.loads(result.out)}
        assert set(hosts) == {"a", "b"}
        assert all(p[0]["process"] == "worker" and p[0]["pid"] for p in hosts.values())
        restarted = bridge("restart", "web", cwd=workspace)
        assert restarted.code == 0 and "a: restart" in restarted.out and "b: restart" in restarted.out
        logs = bridge("logs", "--on", "web", "-n", "5", cwd=workspace)
        assert "a | " in logs.out and "b | " in logs.out and "worker up" in logs.out
    finally:
        server.sh('systemctl stop "bridge-$1-worker.service"; systemctl disable "bridge-$1-worker.service"', name,
                  check=False)
        server.sh('systemctl --user stop "bridge-$1-worker.service"', name, user=APP_USER, check=False)


def test_restarts_in_quick_succession_are_not_refused_by_the_start_limit(app_ws: AppWorkspace) -> None:
    """systemd refuses a sixth start within 10 s (StartLimitBurst); bridge's restarts reset that count."""
    assert app_ws.run("push").code == 0
    for _ in range(7):
        result = app_ws.run("restart")
        assert result.code == 0, result
    assert app_ws.serving("v1")
