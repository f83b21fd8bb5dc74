"""`bridge config`: the app's environment, kept on the server only, reaching the running processes."""
from __future__ import annotations

import json
import os
from pathlib import Path

from tests.apps.conftest import AppWorkspace
from tests.apps.test_processes import main_pid, wait_new_pid
from tests.conftest import Home

SECRET = "s3cr3t-v4lue-only-on-the-server"


def files_holding(folder: Path, needle: bytes) -> list[Path]:
    found = []
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = Path(dirpath) / name
            try:
                if not path.is_symlink() and needle in path.read_bytes():
                    found.append(path)
            except OSError:
                pass
    return found


def test_config_reaches_the_app_and_stays_on_the_server(app_ws: AppWorkspace, home: Home) -> None:
    assert app_ws.run("push").code == 0
    assert app_ws.serving("v1")
    pid = main_pid(app_ws)
    result = app_ws.run("config", "set", "prod", f"GREETING={SECRET}", "OTHER=x y")
    assert result.code == 0, result
    assert "changed GREETING, OTHER" in result.out and SECRET not in result.out + result.err
    assert wait_new_pid(app_ws, pid)
    assert app_ws.serving(SECRET, "/config")
    env_file = f"{app_ws.root}/.bridge/config.env"
    assert app_ws.on_server('stat -c %a "$1"', env_file).strip() == "600"
    listed = app_ws.run("config", "list", "--json")
    assert SECRET not in listed.out and json.loads(listed.out)[0]["config"]["GREETING"] == "********"
    shown = app_ws.run("config", "list", "prod", "--show", "--json")
    assert json.loads(shown.out)[0]["config"] == {"GREETING": SECRET, "OTHER": "x y"}
    assert files_holding(home.path, SECRET.encode()) == []
    assert files_holding(app_ws.folder, SECRET.encode()) == []
    audit = (home.path / ".local/state/bridge/audit.jsonl").read_text()
    assert "config set prod 'GREETING=***'" in audit


def test_config_survives_a_push_and_no_restart_keeps_the_process(app_ws: AppWorkspace) -> None:
    assert app_ws.run("push").code == 0
    assert app_ws.run("config", "set", "GREETING=hello").code == 0
    app_ws.commit({"version.txt": "v2\n"})
    assert app_ws.run("push").code == 0
    assert app_ws.serving("hello", "/config")
    pid = main_pid(app_ws)
    assert app_ws.run("config", "set", "--no-restart", "GREETING=later").code == 0
    assert main_pid(app_ws) == pid
    assert app_ws.get("/config") == (200, "hello")
    unset = app_ws.run("config", "unset", "prod", "GREETING")
    assert unset.code == 0 and "changed GREETING" in unset.out
    assert wait_new_pid(app_ws, pid)
    assert app_ws.serving("", "/config")


def test_a_bad_config_word_is_a_usage_error(app_ws: AppWorkspace) -> None:
    result = app_ws.run("config", "set", "prod", "NOEQUALS")
    assert result.code == 2 and "is not KEY=VALUE" in result.err
    bad_key = app_ws.run("config", "set", "prod", "1BAD=x")
    assert bad_key.code == 1 and "config key '1BAD'" in bad_key.err
