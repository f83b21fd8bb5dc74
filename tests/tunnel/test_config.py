"""Forward specs, backoff, config errors and the systemd unit: no network needed."""
from __future__ import annotations

import random

import pytest

from bridge.errors import ConfigError
from bridge.backoff import Backoff
from bridge.tunnel.forwards import Forward, parse_forward
from tests.conftest import write_config


@pytest.mark.parametrize("spec, forward", [
    ("2222:localhost:22", Forward(2222, "localhost", 22)),
    ("0.0.0.0:8080:10.0.0.5:80", Forward(8080, "10.0.0.5", 80, bind="0.0.0.0")),
    ("[::1]:2222:[::1]:22", Forward(2222, "::1", 22, bind="::1")),
])
def test_forward_specs(spec: str, forward: Forward) -> None:
    assert parse_forward(spec) == forward


@pytest.mark.parametrize("spec", ["2222", "2222:localhost", "x:localhost:22", "2222:localhost:70000"])
def test_bad_forward_specs_name_the_entry(spec: str) -> None:
    with pytest.raises(ConfigError, match=f"cannot read `{spec}`"):
        parse_forward(spec)


def test_backoff_grows_to_the_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(cap=30, base=0.5, jitter=0.5, rng=random.Random(1))
    delays = [backoff.next() for _ in range(10)]
    ceilings = [min(30, 0.5 * 2 ** i) for i in range(10)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings))
    assert max(delays) <= 30 and delays[-1] >= 15
    backoff.reset()
    assert backoff.next() <= 0.5


def _tunnel_ws(workspace, tunnel: str) -> None:
    write_config(workspace, f"workspace: edge\nremotes:\n  relay: ssh://t@relay.example.com\ntunnel:\n{tunnel}")


def test_up_without_forwards_is_a_config_error(bridge, workspace) -> None:
    _tunnel_ws(workspace, "  relay: relay\n")
    result = bridge("tunnel", "up", cwd=workspace)
    assert result.code == 2 and "`tunnel.forwards` is empty" in result.err


def test_unknown_relay_names_file_and_line(bridge, workspace) -> None:
    _tunnel_ws(workspace, "  relay: realy\n  forwards: ['2222:localhost:22']\n")
    result = bridge("tunnel", "up", cwd=workspace)
    assert result.code == 2 and "bridge.yaml:5" in result.err and "did you mean `relay`?" in result.err


def test_status_before_any_tunnel_ran(bridge, workspace) -> None:
    _tunnel_ws(workspace, "  relay: relay\n  forwards: ['2222:localhost:22']\n")
    assert "no tunnel has run" in bridge("tunnel", "status", cwd=workspace).out
    assert '"running": false' in bridge("tunnel", "status", "--json", cwd=workspace).out


def test_install_prints_and_writes_a_boot_time_unit(bridge, workspace, tmp_path) -> None:
    _tunnel_ws(workspace, "  relay: relay\n  forwards: ['2222:localhost:22']\n")
    printed = bridge("tunnel", "install", "--print", "--user", "root", cwd=workspace)
    assert printed.code == 0, printed
    for line in ("Restart=always", "WantedBy=multi-user.target", "User=root", f"WorkingDirectory={workspace}",
                 "-m bridge tunnel up", "ReadWritePaths=/root/.local/state/bridge"):
        assert line in printed.out
    unit = tmp_path / "units" / "bridge-tunnel-edge.service"
    written = bridge("tunnel", "install", "--path", str(unit), cwd=workspace)
    assert written.code == 0 and unit.read_text().strip() == printed.out.strip()
    assert "systemctl enable --now bridge-tunnel-edge.service" in written.out
