"""Processes on a host without systemd, and the deploy settings' one schema."""
from __future__ import annotations

from pathlib import Path

from bridge.server import hook
from bridge.sync.prepare import DeploySettings
from tests.conftest import write_config
from tests.sync.test_push import commit, git


def test_processes_on_a_host_without_systemd_fail_clearly_and_keep_current(bridge, workspace: Path,
                                                                           tmp_path: Path) -> None:
    assert not Path("/run/systemd/system").exists(), "this test needs a machine that does not run systemd"
    root = tmp_path / "srv"
    git(workspace, "init", "-q", "-b", "main")
    write_config(workspace, f"workspace: app\ndefault: box\nremotes:\n  box: local://{root}\n")
    commit(workspace, {"app.py": "print(1)\n"}, "first")
    assert bridge("init", cwd=workspace).code == 0
    assert bridge("push", cwd=workspace).code == 0
    before = (root / "current").resolve()
    commit(workspace, {"Procfile": "web: python3 app.py\n"})
    result = bridge("push", cwd=workspace)
    assert result.code == 1, result
    assert "processes need systemd on the server" in result.out + result.err
    assert (root / "current").resolve() == before


def test_a_root_without_deploy_json_gets_the_one_schemas_defaults(tmp_path: Path) -> None:
    from bridge.server.layout import Layout

    assert hook.load_settings(Layout(tmp_path)) == DeploySettings().as_json()
    assert hook.load_settings(Layout(tmp_path))["front"] == "auto"
