"""Processes under the server's real systemd: started after the switch, restarted on push and after a
crash, rolled back when the running new release fails its healthcheck."""
from __future__ import annotations

import time

from tests.apps.conftest import AppWorkspace


def main_pid(ws: AppWorkspace, process: str = "web") -> int:
    """The pid of the process's running unit: its own, or (web behind the nginx front) the serving slot's."""
    flag = "" if ws.login == "root" else "--user"
    out = ws.on_server(f'for unit in $(systemctl {flag} list-units --plain --no-legend --state=active "$1" "$2" '
                       f'| cut -d" " -f1); do systemctl {flag} show -p MainPID --value "$unit"; done',
                       f"bridge-{ws.name}-{process}.service", f"bridge-{ws.name}-{process}@*.service")
    return max([int(pid) for pid in out.split()] or [0])


def wait_new_pid(ws: AppWorkspace, old: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = main_pid(ws)
        if pid and pid != old:
            return pid
        time.sleep(0.2)
    return 0


def test_web_starts_after_push_and_serves_each_new_release(app_ws: AppWorkspace) -> None:
    first = app_ws.run("push")
    assert first.code == 0, first
    assert app_ws.serving("v1")
    pid = main_pid(app_ws)
    app_ws.commit({"version.txt": "v2\n"})
    second = app_ws.run("push")
    assert second.code == 0, second
    assert app_ws.serving("v2")
    assert main_pid(app_ws) != pid
    cwd = app_ws.on_server('readlink "/proc/$1/cwd"', str(main_pid(app_ws))).strip()
    assert cwd.endswith(app_ws.current())


def test_a_killed_process_comes_back(app_ws: AppWorkspace) -> None:
    assert app_ws.run("push").code == 0
    assert app_ws.serving("v1")
    pid = main_pid(app_ws)
    app_ws.server.sh('kill -9 "$1"', str(pid))
    assert wait_new_pid(app_ws, pid)
    assert app_ws.serving("v1")


def test_a_failed_healthcheck_of_the_running_release_switches_back(app_ws: AppWorkspace) -> None:
    app_ws.commit({"bridge.yaml": (app_ws.folder / "bridge.yaml").read_text()
                   + "  healthcheck: /health\n  healthcheck_timeout: 3\n"})
    assert app_ws.run("push").code == 0
    assert app_ws.serving("v1")
    good = app_ws.current()
    app_ws.commit({"version.txt": "broken\n"})
    result = app_ws.run("push")
    assert result.code != 0, result
    assert "healthcheck" in result.out + result.err
    assert f"back on releases/{good}" in result.out + result.err
    assert app_ws.current() == good
    assert app_ws.serving("v1")
    assert good in app_ws.on_server('ls "$1/releases"', app_ws.root).split()
    assert len(app_ws.on_server('ls "$1/releases"', app_ws.root).split()) == 1
