"""Behind a real firewall: the server is unreachable directly, reachable through the relay by ssh -J and bridge."""
from __future__ import annotations

import json

from tests.tunnel.conftest import TunnelEnv, wait_for


def test_direct_ssh_to_the_firewalled_server_fails(tunnel_env: TunnelEnv) -> None:
    env = tunnel_env
    direct = env.ssh("-p", str(env.server.port), f"root@{env.ns.ns_ip}", "true", timeout=30)
    assert direct.returncode == 255
    assert "timed out" in direct.stderr


def test_plain_ssh_and_bridge_reach_it_through_the_relay(tunnel_env: TunnelEnv, bridge) -> None:
    env = tunnel_env.start()
    wait_for(env.usable, 15)
    jump = env.ssh("-J", f"root@127.0.0.1:{env.relay.port}", "-p", str(env.relay_port), "root@localhost",
                   "cat /proc/net/dev")
    assert jump.returncode == 0, jump.stderr
    assert env.ns.ns_if in jump.stdout  # the command ran inside the namespace
    checked = bridge("test", "edge", "--json", cwd=env.client_ws)
    assert checked.code == 0, checked
    assert '"name": "auth",\n        "ok": true' in checked.out
    ran = bridge("exec", "--on", "edge", "--", "cat", "/proc/net/dev", cwd=env.client_ws)
    assert ran.code == 0, ran
    assert env.ns.ns_if in ran.out


def test_status_shows_the_running_tunnel_and_down_stops_it(tunnel_env: TunnelEnv, bridge) -> None:
    env = tunnel_env.start()
    wait_for(env.usable, 15)
    wait_for(lambda: '"last_heartbeat_rtt_ms": null' not in bridge("tunnel", "status", "--json",
                                                                     cwd=env.tunnel_ws).out, 10, every=0.5)
    state = json.loads(bridge("tunnel", "status", "--json", cwd=env.tunnel_ws).out)
    assert (state["state"], state["running"], state["pid"]) == ("connected", True, env.proc.pid)
    [forward] = state["forwards"]
    assert forward["forward"] == f"localhost:{env.relay_port} -> 127.0.0.1:{env.server.port}"
    assert (forward["state"], forward["reason"]) == ("up", None) and forward["since"] >= state["connected_since"]
    assert state["last_error"] is None
    assert state["connected_since"] and state["reconnects"] == 0 and 0 < state["last_heartbeat_rtt_ms"] < 1000
    table = bridge("tunnel", "status", cwd=env.tunnel_ws)
    assert table.code == 0 and "connected since" in table.out and "ms round trip" in table.out

    stopped = bridge("tunnel", "down", cwd=env.tunnel_ws)
    assert stopped.code == 0 and f"stopped tunnel (pid {env.proc.pid})" in stopped.out
    assert env.proc.wait(10) == 0
    assert "stopped: forwards cancelled" in env.output()
    assert not env.usable()  # the relay freed the port
    after = bridge("tunnel", "status", "--json", cwd=env.tunnel_ws)
    assert after.code == 1 and json.loads(after.out)["state"] == "stopped"
    assert "no tunnel is running" in bridge("tunnel", "down", cwd=env.tunnel_ws).out


def test_a_second_tunnel_in_the_same_workspace_is_refused(tunnel_env: TunnelEnv, bridge) -> None:
    env = tunnel_env.start()
    wait_for(env.usable, 15)
    second = bridge("tunnel", "up", cwd=env.tunnel_ws, timeout=20)
    assert second.code == 1 and f"already running (pid {env.proc.pid})" in second.err
