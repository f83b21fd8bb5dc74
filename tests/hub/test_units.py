"""`bridge hub install` / `bridge agent install`: sandboxed units a chosen account can run (systemd runs them)."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.accounts import system_venv
from tests.systemd_server import APP_USER, BASE_IMAGE, SystemdServer, build_image, docker, exposure, start_server

REPO = Path(__file__).resolve().parents[2]
PYTHON = "/opt/bridge/bin/python3"  # Debian's python3 in a venv copied into the container, readable by app
HUB_STATE = f"/home/{APP_USER}/.local/state/bridge/hub"
AGENT_STATE = f"/home/{APP_USER}/agent"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_hub_unit_on_a_low_port_is_sandboxed_with_only_the_bind_capability(bridge, tmp_path: Path) -> None:
    printed = bridge("hub", "install", "--print", "--port", "443", "--state", str(tmp_path / "hub"))
    assert printed.code == 0, printed
    lines = printed.out.splitlines()
    assert "CapabilityBoundingSet=CAP_NET_BIND_SERVICE" in lines and "AmbientCapabilities=CAP_NET_BIND_SERVICE" in lines
    assert f"ReadWritePaths={(tmp_path / 'hub').resolve()}" in lines and "LimitNOFILE=65536" in lines
    high = bridge("hub", "install", "--print", "--port", "8443", "--state", str(tmp_path / "hub")).out.splitlines()
    assert "CapabilityBoundingSet=" in high and "AmbientCapabilities=" in high
    unit = tmp_path / "bridge-hub.service"
    unit.write_text(printed.out)
    assert exposure(unit) < 2.5


def test_install_refuses_an_interpreter_the_account_cannot_run(bridge) -> None:
    for command in (["hub", "install"], ["agent", "install"]):
        refused = bridge(*command, "--print", "--user", "nobody", "--state", "/root")
        assert refused.code != 0 and refused.out == "" and "Traceback" not in refused.err
    hub = bridge("hub", "install", "--print", "--user", "nobody")
    assert "nobody cannot run bridge with" in hub.err and "--user nobody --python /opt/bridge/bin/python3" in hub.err


@pytest.mark.slow
def test_hardened_hub_and_agent_units_run_under_systemd(tmp_path: Path) -> None:
    """In a systemd container: the hub on port 443 as `app`, an agent enrolled with it, both as units; the
    agent's link is up through the sandboxed units and both score low in systemd-analyze."""
    server = start_server(tmp_path, build_image(BASE_IMAGE))
    try:
        docker("cp", str(system_venv(REPO)), f"{server.id}:/opt/bridge")
        installed = server.sh(f'"$1" -m bridge hub install --user {APP_USER} --python "$1" --port 443 && '
                              'systemctl daemon-reload && systemctl start bridge-hub.service', PYTHON)
        assert "wrote /etc/systemd/system/bridge-hub.service" in installed
        token = server.sh('"$1" -m bridge hub token agent web1 --state "$2"', PYTHON, HUB_STATE,
                          user=APP_USER).strip()
        _wait(server, '"$1" -c "import socket; socket.create_connection((\'127.0.0.1\', 443), 1)"', PYTHON)
        # enrol by hand (the unit holds no token), then hand the enrolled folder to the unit
        enrolled = server.sh('"$1" -m bridge agent up --hub wss://127.0.0.1:443 --token "$2" --state "$3" & pid=$!; '
                             'for i in $(seq 100); do grep -qs \'"state": "connected"\' "$3/status.json" && break; '
                             'sleep 0.2; done; kill $pid; wait $pid; cat "$3/enrolment.json"',
                             PYTHON, token, AGENT_STATE)
        assert '"enrolled": true' in enrolled, enrolled
        installed = server.sh(f'"$1" -m bridge agent install --user {APP_USER} --python "$1" --state "$2" && '
                              'systemctl daemon-reload && systemctl start bridge-agent.service', PYTHON, AGENT_STATE)
        assert "wrote /etc/systemd/system/bridge-agent.service" in installed
        status = _wait(server, '"$1" -m bridge agent status --json --state "$2" | grep -q \'"state": "connected"\' '
                               '&& "$1" -m bridge agent status --json --state "$2"', PYTHON, AGENT_STATE, user=APP_USER)
        assert json.loads(status)["agent"] == "web1"
        for unit in ("bridge-hub.service", "bridge-agent.service"):
            assert server.sh(f"systemctl show -p User --value {unit}").strip() == APP_USER
            score = server.sh(f"systemd-analyze security {unit} | tail -1")
            assert float(re.search(r": (\d+\.\d)", score).group(1)) < 2.5, (unit, score)  # type: ignore[union-attr]
    finally:
        server.stop()


def _wait(server: SystemdServer, script: str, *args: str, user: str = "root", tries: int = 100) -> str:
    """Run `script` until it succeeds (every 0.3 s); its stdout, or the units' journal in the failure."""
    for _ in range(tries):
        out = server.sh(f"{script} && echo __ok", *args, user=user, check=False)
        if out.endswith("__ok\n"):
            return out.removesuffix("__ok\n")
        server.sh("sleep 0.3")
    journal = server.sh("journalctl -u bridge-hub -u bridge-agent --no-pager | tail -30", check=False)
    raise AssertionError(f"never true: {script}\n{journal}")
