"""`bridge tunnel install`: a unit the chosen account can actually run, sandboxed (systemd-analyze measures it)."""
from __future__ import annotations

import re
import shutil
import stat
import sys
from pathlib import Path
from typing import Iterator

import pytest

from bridge import systemd
from tests.accounts import Account, make_account, system_venv
from tests.conftest import write_config
from tests.systemd_server import APP_USER, BASE_IMAGE, SystemdServer, build_image, docker, exposure, start_server

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
    in_tmp = system_venv(REPO) / "bin" / "python3"
    hidden = bridge("tunnel", "install", "--print", "--user", account.name, "--python", str(in_tmp), cwd=shared_ws)
    assert hidden.code == 1 and "which the unit sees empty (PrivateTmp=)" in hidden.err
    python = _moved_venv(in_tmp.parent.parent, account.home / "venv") / "bin" / "python3"
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


def _moved_venv(venv: Path, to: Path) -> Path:
    """A copy of `venv` at `to` (root's files, readable by all): `python -m bridge` finds its packages there."""
    shutil.copytree(venv, to, symlinks=True)
    return to


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
        scores[name] = exposure(unit)
    assert scores["bare"] > 9 and scores["hardened"] < 2.5, scores


@pytest.mark.slow
def test_the_hardened_unit_runs_the_tunnel_under_systemd(tmp_path: Path) -> None:
    """In a systemd container: install as root for the `app` account, start the unit, reach sshd through it."""
    server = start_server(tmp_path, build_image(BASE_IMAGE))
    try:
        # Debian's python3 3.11, as in the bookworm image; `python -m` finds a moved venv's packages by itself
        docker("cp", str(system_venv(REPO)), f"{server.id}:/opt/bridge")
        venv = Path("/opt/bridge")
        _app_tunnel_workspace(server, server.host_key.with_suffix(".pub").read_text())
        installed = server.sh('cd /home/app/ws && "$1" -m bridge tunnel install --user app --python "$1" && '
                              'systemctl daemon-reload && systemctl start bridge-tunnel-edge.service',
                              str(venv / "bin" / "python3"))
        assert "wrote /etc/systemd/system/bridge-tunnel-edge.service" in installed
        banner = server.sh('"$1" -c "$2" || journalctl -u bridge-tunnel-edge --no-pager | tail -20',
                           str(venv / "bin" / "python3"), WAIT_FOR_BANNER, check=False)
        assert banner.startswith("SSH-2.0"), banner
        status = server.sh('cd /home/app/ws && "$1" -m bridge tunnel status --json', str(venv / "bin" / "python3"),
                           user=APP_USER)
        assert '"state": "connected"' in status and '"state": "up"' in status
        score = server.sh("systemd-analyze security bridge-tunnel-edge.service | tail -1")
        level = float(re.search(r": (\d+\.\d)", score).group(1))  # type: ignore[union-attr]
        assert level < 2.5, score
        server.sh("systemctl stop bridge-tunnel-edge.service")
        assert "stopped: forwards cancelled" in server.sh("journalctl -u bridge-tunnel-edge --no-pager")
    finally:
        server.stop()


WAIT_FOR_BANNER = """
import socket, sys, time
for _ in range(100):
    try:
        with socket.create_connection(("127.0.0.1", 2222), timeout=1) as sock:
            sock.settimeout(1)
            banner = sock.recv(8)
            if banner:
                sys.exit(print(banner.decode()))
    except OSError:
        pass
    time.sleep(0.2)
sys.exit(1)
"""


def _app_tunnel_workspace(server: SystemdServer, host_key_pub: str) -> None:
    """app's key (authorized on the container's own sshd, which plays the relay), known_hosts, and bridge.yaml."""
    kind, blob = host_key_pub.split()[:2]
    server.sh('cd /home/app && mkdir -p ws .ssh && ssh-keygen -q -t ed25519 -N "" -f .ssh/id_ed25519 && '
              'cat .ssh/id_ed25519.pub >> .ssh/authorized_keys && chmod 600 .ssh/authorized_keys && '
              'printf "127.0.0.1 %s %s\\n" "$1" "$2" > .ssh/known_hosts && '
              'printf "%s" "$3" > ws/bridge.yaml', kind, blob,
              "workspace: edge\nremotes:\n  relay: {url: \"ssh://app@127.0.0.1\", identity: /home/app/.ssh/id_ed25519}\n"
              "tunnel:\n  relay: relay\n  forwards: [\"2222:localhost:22\"]\n  keepalive: 5\n",
              user=APP_USER)
