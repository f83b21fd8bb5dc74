"""Deploys that cannot hang or surprise, on the real systemd server: a background child of a deploy
command, a killed hook, `bridge deploy cancel`, Ctrl-C on the client, redeploys and rollback."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from tests.apps.conftest import AppWorkspace
from tests.conftest import BRIDGE, Home

SLOW = 'test -f slow && sleep "$(cat slow)" || true'


def with_commands(ws: AppWorkspace, *commands: str) -> str:
    """bridge.yaml with these deploy.commands added."""
    return (ws.folder / "bridge.yaml").read_text() + f"  commands: {json.dumps(list(commands))}\n"


def start_push(ws: AppWorkspace, home: Home, *args: str) -> subprocess.Popen:
    """`bridge push` in the background, in its own process group (a terminal's Ctrl-C reaches the group)."""
    return subprocess.Popen([*BRIDGE, "push", *args], cwd=ws.folder, env=home.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)


def pids_of(ws: AppWorkspace, token: str) -> list[int]:
    out = ws.server.sh('for p in $(pgrep -f -- "$1"); do [ "$p" = "$$" ] || echo "$p"; done', token)  # not this sh
    return [int(p) for p in out.split()]


def kill_pids(ws: AppWorkspace, pids: list[int]) -> None:
    for pid in pids:
        ws.server.sh('kill -9 "$1" 2>/dev/null || true', str(pid))


def test_a_background_child_of_a_deploy_command_does_not_hold_the_push(app_ws: AppWorkspace) -> None:
    token = "600.%d" % os.getpid()
    app_ws.commit({"bridge.yaml": with_commands(app_ws, f"nohup sleep {token} &")})
    try:
        result = app_ws.run("push", timeout=90)
        assert result.code == 0, result
        assert app_ws.serving("v1")
        assert pids_of(app_ws, f"sleep {token}"), "the background child was expected to go on running"
    finally:
        kill_pids(app_ws, pids_of(app_ws, f"sleep {token}"))


def test_a_killed_hook_leaves_no_lock(app_ws: AppWorkspace, home: Home) -> None:
    token = slow_token("1")
    app_ws.commit({"bridge.yaml": with_commands(app_ws, SLOW), "slow": token + "\n"})
    push = start_push(app_ws, home)
    try:
        pid = wait_lock_holder(app_ws, token)
        app_ws.server.sh('kill -9 "$1"', str(pid))
        push.wait(timeout=60)
    finally:
        push.kill()
        kill_pids(app_ws, pids_of(app_ws, f"sleep {token}"))
    (app_ws.folder / "slow").unlink()
    app_ws.commit({"version.txt": "v2\n"})
    result = app_ws.run("push", timeout=90)
    assert result.code == 0, result
    assert "another deploy is running" not in result.out
    assert app_ws.serving("v2")


def test_deploy_cancel_stops_the_deploy_and_current_stays(app_ws: AppWorkspace, home: Home) -> None:
    assert app_ws.run("push").code == 0
    before = app_ws.current()
    token = slow_token("2")
    app_ws.commit({"bridge.yaml": with_commands(app_ws, SLOW), "slow": token + "\n"})
    push = start_push(app_ws, home)
    try:
        wait_lock_holder(app_ws, token)
        cancelled = app_ws.run("deploy", "cancel", "prod")
        assert cancelled.code == 0, cancelled
        assert f"current stays releases/{before}" in cancelled.out
        out, _ = push.communicate(timeout=60)
    finally:
        push.kill()
    assert push.returncode == 1 and "cancelled by `bridge deploy cancel`" in out.decode()
    assert pids_of(app_ws, f"sleep {token}") == []
    assert app_ws.current() == before and app_ws.serving("v1")
    assert "no deploy was running" in app_ws.run("deploy", "cancel").out


def test_ctrl_c_says_the_server_goes_on_and_it_does(app_ws: AppWorkspace, home: Home) -> None:
    assert app_ws.run("push").code == 0
    token = "3.%d" % os.getpid()
    app_ws.commit({"bridge.yaml": with_commands(app_ws, f"sleep {token}"), "version.txt": "v2\n"})
    push = start_push(app_ws, home)
    wait_step(app_ws, f"sleep {token}")
    os.killpg(push.pid, signal.SIGINT)
    out, _ = push.communicate(timeout=60)
    assert push.returncode == 130
    assert "the server goes on deploying" in out.decode() and "bridge deploy cancel prod" in out.decode()
    assert app_ws.serving("v2", timeout=60)


def test_the_same_commit_is_not_redeployed_unless_asked(app_ws: AppWorkspace) -> None:
    assert app_ws.run("push").code == 0
    release = app_ws.current()
    again = app_ws.run("push")
    assert again.code == 0 and "already deployed" in again.out and "up-to-date" in again.out
    assert app_ws.current() == release
    forced = app_ws.run("push", "--redeploy")
    assert forced.code == 0 and app_ws.current() != release


def test_rollback_skips_releases_of_the_current_commit(app_ws: AppWorkspace) -> None:
    assert app_ws.run("push").code == 0
    first = app_ws.current()
    app_ws.commit({"version.txt": "v2\n"})
    assert app_ws.run("push").code == 0
    assert app_ws.run("push", "--redeploy").code == 0
    assert app_ws.serving("v2")
    result = app_ws.run("rollback")
    assert result.code == 0, result
    assert app_ws.current() == first
    assert app_ws.serving("v1")


def slow_token(tag: str) -> str:
    """A sleep length no other process on the server uses, so pgrep finds only ours."""
    return "600.%d%s" % (os.getpid(), tag)


def wait_step(ws: AppWorkspace, command: str) -> None:
    """Wait until the hook runs the deploy command (the deploy is under way on the server)."""
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if pids_of(ws, command):
            return
        time.sleep(0.05)
    raise AssertionError("the deploy command never started")


def wait_lock_holder(ws: AppWorkspace, token: str) -> int:
    """The hook's pid once it holds the deploy lock and runs the slow command."""
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = ws.on_server('cat "$1/.bridge/lock" 2>/dev/null || true', ws.root).strip()
        if text.isdigit() and pids_of(ws, f"sleep {token}"):
            return int(text)
        time.sleep(0.2)
    raise AssertionError("the deploy never took its lock")
