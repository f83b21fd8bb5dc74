"""`bridge tunnel install`: a unit the chosen account can actually run, sandboxed (systemd-analyze measures it)."""
from __future__ import annotations

import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from bridge import systemd
from tests.accounts import Account, make_account, system_venv
from tests.conftest import write_config

REPO = Path(__file__).resolve().parents[2]
TUNNEL_YAML = ("workspace: edge\nremotes:\n  relay: ssh://t@relay.example.com\n"
               "tunnel:\n  relay: relay\n  forwards: ['2222:localhost:22']\n")


@pytest.fixture
def account() -> Iterator[Account]:
    made = make_account("btun")
    try:
        yield made
    finally:
        made.remove()


@pytest.fixture
def shared_ws(account: Account) -> Path:
    """A workspace the account can read (the test's tmp folder under /tmp/pytest-of-root is root's alone)."""
    folder = account.home / "ws"
    folder.mkdir()
    write_config(folder, TUNNEL_YAML)
    return folder


def test_install_refuses_an_interpreter_the_user_cannot_run(bridge, account: Account, shared_ws: Path) -> None:
    assert Path(sys.executable).is_relative_to("/root")  # this machine's python3 is a pyenv one in root's home
    refused = bridge("tunnel", "install", "--print", "--user", account.name, cwd=shared_ws)
    assert refused.code == 1 and refused.out == ""
    assert f"{account.name} cannot run bridge with {sys.executable}: " in refused.err
    assert f"--user {account.name} --python /opt/bridge/bin/python3" in refused.err
    assert "Traceback" not in refused.err


def test_install_with_a_python_the_user_can_run_writes_a_sandboxed_unit(bridge, account: Account,
                                                                        shared_ws: Path, tmp_path: Path) -> None:
    python = system_venv(REPO) / "bin" / "python3"
    unit = tmp_path / "bridge-tunnel-edge.service"
    written = bridge("tunnel", "install", "--user", account.name, "--python", str(python), "--path", str(unit),
                     cwd=shared_ws)
    assert written.code == 0, written
    text = unit.read_text()
    assert f"ExecStart={python} -m bridge tunnel up\n" in text and f"User={account.name}\n" in text
    state = account.home / ".local" / "state" / "bridge"
    assert f"ReadWritePaths={state}\n" in text and "ProtectHome=read-only\n" in text
    assert state.stat().st_uid == account.uid and (account.home / ".local").stat().st_uid == account.uid
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    nobody_can_run = bridge("tunnel", "install", "--print", "--user", account.name, "--python", "/usr/bin/python3",
                            cwd=shared_ws)
    assert nobody_can_run.code == 1 and "No module named 'bridge'" in nobody_can_run.err


def test_unknown_user_is_one_line_with_a_next_step(bridge, shared_ws: Path) -> None:
    result = bridge("tunnel", "install", "--print", "--user", "no-such-user-here", cwd=shared_ws)
    assert result.code == 1 and "no account `no-such-user-here`" in result.err


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_sandbox_takes_the_exposure_score_from_unsafe_to_ok(tmp_path: Path) -> None:
    scores = {}
    for name, sandbox in (("bare", []), ("hardened", systemd.hardening([tmp_path]))):
        unit = tmp_path / f"{name}.service"
        unit.write_text(systemd.render_unit(description=name, argv=["/usr/bin/python3", "-m", "bridge", "tunnel", "up"],
                                            user="root", workdir=tmp_path, sandbox=sandbox))
        scores[name] = _exposure(unit)
    assert scores["bare"] > 9 and scores["hardened"] < 2.5, scores


def _exposure(unit: Path) -> float:
    """systemd-analyze's overall exposure (0 safe … 10 unsafe) for a unit file, without loading it."""
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True,
                         text=True, check=False).stdout
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", out)
    assert found, out
    return float(found.group(1))
