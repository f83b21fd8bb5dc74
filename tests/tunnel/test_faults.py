"""Faults, produced for real: relay crash, silent cut, wrong key, forwarded port taken."""
from __future__ import annotations

import socket
import time

from tests.tunnel.conftest import BACKOFF_CAP, KEEPALIVE, TunnelEnv, wait_for
from tests.tunnel.netns import kill_with_sessions
from tests.sshd import keygen


def test_relay_killed_with_its_sessions_and_restarted(tunnel_env: TunnelEnv) -> None:
    env = tunnel_env.start()
    wait_for(env.usable, 15)
    for outage in (1.0, 3.0):
        kill_with_sessions(env.relay)
        assert not env.usable()
        time.sleep(outage)
        env.relay.start()
        back = wait_for(env.usable, BACKOFF_CAP + 2)
        assert back < BACKOFF_CAP + 2
    assert env.proc.poll() is None
    assert env.output().count("disconnected: the relay closed the connection") == 2
    assert env.output().count("connected to") == 3


def test_silent_cut_noticed_within_two_heartbeats_and_healed(tunnel_env: TunnelEnv) -> None:
    env = tunnel_env.start()
    wait_for(env.usable, 15)
    time.sleep(KEEPALIVE + 0.5)  # steady state: a heartbeat has been answered
    env.ns.cut()
    noticed = wait_for(lambda: "no answer to a heartbeat" in env.output(), 2 * KEEPALIVE + 1, every=0.1)
    assert noticed <= 2 * KEEPALIVE + 0.5
    time.sleep(20 - noticed)
    env.ns.heal()
    wait_for(env.usable, 20)
    assert env.proc.poll() is None


def test_wrong_key_at_the_relay_is_retried_until_fixed(tunnel_env: TunnelEnv) -> None:
    env = tunnel_env
    authorized = env.relay.authorized_keys.read_text()
    other = keygen(env.relay.dir / "other_key")
    env.relay.authorized_keys.write_text(other.with_suffix(".pub").read_text())
    env.start()
    wait_for(lambda: env.output().count("permission denied (publickey)") >= 3, 20, every=0.2)
    assert env.proc.poll() is None and not env.usable()
    assert "retrying in" in env.output()
    env.relay.authorized_keys.write_text(authorized)
    wait_for(env.usable, BACKOFF_CAP + 2)


def test_forwarded_port_taken_on_the_relay_is_retried_until_free(tunnel_env: TunnelEnv) -> None:
    env = tunnel_env
    squatters = squat(env.relay_port)
    env.start()
    wait_for(lambda: f"refused to forward localhost:{env.relay_port}" in env.output(), 20, every=0.2)
    assert "the port is in use there" in env.output() and env.proc.poll() is None
    time.sleep(2 * KEEPALIVE + 0.5)  # asked again at each heartbeat over the same login
    assert env.output().count("connected to") == 1
    for sock in squatters:
        sock.close()
    wait_for(env.usable, KEEPALIVE + 2)


def squat(port: int) -> list[socket.socket]:
    """Listen on the relay's loopback `port` (both families, as sshd binds `localhost`): the port is taken."""
    return [_listen(family, address, port) for family, address in ((socket.AF_INET, "127.0.0.1"),
                                                                   (socket.AF_INET6, "::1"))]


def _listen(family: int, address: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen()
    return sock


def test_first_connect_is_retried_until_the_relay_is_up(tunnel_env: TunnelEnv) -> None:
    env = tunnel_env
    env.relay.stop()
    env.start()
    wait_for(lambda: env.output().count("Connection refused") >= 2, 15, every=0.1)
    assert "sooner if the relay's port answers" in env.output()
    time.sleep(3)
    env.relay.start()
    assert wait_for(env.usable, 3) < 1.5  # the TCP probe notices the relay long before the backoff step ends


def _cut_and_strand(env: TunnelEnv) -> None:
    """A silent cut that outlives the tunnel's own session: noticed by bridge, then new connections pass again
    while the old flow stays black-holed (a NAT that lost its mappings), so the relay hears nothing more of it."""
    wait_for(env.usable, 15)
    time.sleep(KEEPALIVE + 0.5)
    old_flows = env.ns.flows_to(env.relay.port)
    assert old_flows
    env.ns.cut()
    wait_for(lambda: "no answer to a heartbeat" in env.output(), 2 * KEEPALIVE + 1, every=0.1)
    env.ns.strand(old_flows)


def test_silent_cut_against_a_relay_with_client_alive_settings_comes_back(tunnel_env: TunnelEnv, bridge) -> None:
    env = tunnel_env
    env.relay_settings("ClientAliveInterval 1", "ClientAliveCountMax 2")  # the README's 15 × 3, scaled down
    env.start()
    _cut_and_strand(env)
    # the relay drops the dead session within 1 s × 2 (+1); a refused forward is asked again each heartbeat
    wait_for(env.usable, 3 + KEEPALIVE + BACKOFF_CAP + 2)
    wait_for(lambda: env.status(bridge)["last_error"] is None, KEEPALIVE + 2, every=0.3)


def test_silent_cut_against_a_default_relay_names_the_settings_it_needs(tunnel_env: TunnelEnv, bridge) -> None:
    env = tunnel_env.start()
    _cut_and_strand(env)
    wait_for(lambda: env.status(bridge)["state"] == "degraded", 3 + BACKOFF_CAP, every=0.3)
    [forward] = env.status(bridge)["forwards"]
    assert forward["state"] == "refused"
    for setting in ("ClientAliveInterval 15", "ClientAliveCountMax 3"):
        assert setting in forward["hint"] and setting in env.output()
    time.sleep(2 * KEEPALIVE + 0.5)
    assert not env.usable()  # the relay still holds the port for the dead session
    assert env.output().count("connected to") == 2  # one login after the cut; refusals are asked again over it
