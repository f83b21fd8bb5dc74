"""Each forward on its own: one refused relay port leaves the others up, and status and the log say which and why."""
from __future__ import annotations

import time

from tests.sshd import free_port
from tests.tunnel.conftest import KEEPALIVE, TunnelEnv, wait_for
from tests.tunnel.netns import usable
from tests.tunnel.test_faults import squat


def test_one_port_taken_on_the_relay_leaves_the_other_forward_up(tunnel_env: TunnelEnv, bridge) -> None:
    env = tunnel_env
    taken = free_port()
    env.add_forward(taken)
    squatters = squat(taken)
    env.start()
    wait_for(env.usable, 15)
    wait_for(lambda: env.status(bridge)["last_heartbeat_at"] is not None, 10, every=0.3)
    state = env.status(bridge)
    up, refused = state["forwards"]
    assert (up["state"], refused["state"], state["state"]) == ("up", "refused", "degraded")
    assert refused["forward"].startswith(f"localhost:{taken} ") and "the port is in use there" in refused["reason"]
    assert "ClientAliveInterval 15" in refused["hint"] and refused["since"] > state["started_at"]
    assert state["last_error"] == refused["reason"] and state["hint"] == refused["hint"]
    assert state["last_error_at"] >= refused["since"]
    log = env.output()
    assert f"forwarding localhost:{env.relay_port} " in log and "the other forwards stay up" in log
    assert "  hint: if this follows a cut link" in log
    table = bridge("tunnel", "status", cwd=env.tunnel_ws).out
    assert "refused since" in table and "up since" in table and "ClientAliveCountMax" in table

    for sock in squatters:
        sock.close()
    wait_for(lambda: usable(taken), KEEPALIVE + 2)  # asked again at the next heartbeat, over the same login
    wait_for(lambda: env.status(bridge)["last_error"] is None, KEEPALIVE + 2, every=0.3)
    healed = env.status(bridge)
    assert healed["state"] == "connected" and [f["state"] for f in healed["forwards"]] == ["up", "up"]
    assert (healed["last_error_at"], healed["hint"], healed["reconnects"]) == (None, None, 0)
    assert env.output().count("connected to") == 1 and env.usable()


def test_a_failed_login_reaches_status_with_its_time_and_hint_and_clears_once_healthy(tunnel_env: TunnelEnv,
                                                                                   bridge) -> None:
    env = tunnel_env
    authorized = env.relay.authorized_keys.read_text()
    env.relay.authorized_keys.write_text("")
    before = time.time()
    env.start()
    wait_for(lambda: env.status(bridge).get("last_error") is not None, 15, every=0.3)
    state = env.status(bridge)
    assert "permission denied (publickey)" in state["last_error"] and state["last_error_at"] >= before
    assert state["hint"] and state["hint"] in env.output()  # the same next step in status and in the log
    assert [f["state"] for f in state["forwards"]] == ["down"]
    env.relay.authorized_keys.write_text(authorized)
    wait_for(env.usable, 10)
    wait_for(lambda: env.status(bridge)["last_error"] is None, KEEPALIVE + 2, every=0.3)
    assert env.status(bridge)["hint"] is None
