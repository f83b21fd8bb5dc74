"""`bridge agent up/status/install`: enrolment, heartbeats, reconnects, replacement, revocation."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from tests.hub.conftest import Agent, Hub, wait_for


def test_agent_enrols_and_shows_in_status_and_the_api(hub: Hub, admin: str, agent: Agent) -> None:
    status = agent.status()
    assert status["agent"] == "web1" and status["running"] and status["reconnects"] == 0
    rows = wait_for(lambda: [a for a in hub.api("/api/v1/agents", admin)[1]["agents"] if a.get("rtt_ms") is not None], 10)
    assert rows[0]["name"] == "web1" and rows[0]["online"] and rows[0]["version"] and rows[0]["capabilities"] == ["ssh"]
    wait_for(lambda: agent.status()["rtt_ms"] is not None, 10)
    assert oct((agent.state / "agent.key").stat().st_mode & 0o777) == "0o600"


def test_an_enrolled_agent_comes_back_with_its_own_key_and_the_token_is_spent(
        hub: Hub, admin: str, agent_factory: Callable[[str], Agent]) -> None:
    token = hub.token("agent", "web2")
    first = agent_factory("web2").start(hub.url, token)
    wait_for(first.connected, 30)
    first.stop()
    assert first.status()["state"] == "stopped"
    again = Agent(first.home, first.state, first.log).start()  # no token: the registered key signs
    try:
        wait_for(again.connected, 30)
        assert hub.online(admin) == ["web2"]
    finally:
        again.stop()
    thief = agent_factory("web2").start(hub.url, token)  # the same token a second time
    assert thief.proc.wait(30) == 255
    assert "used already" in thief.log.read_text()


def test_hub_restart_the_agent_returns(hub: Hub, admin: str, agent: Agent) -> None:
    hub.stop()
    wait_for(lambda: agent.status()["state"] != "connected", 10)
    hub.start()
    wait_for(lambda: agent.status()["reconnects"] >= 1 and agent.connected(), 30)
    assert hub.online(admin) == ["web1"]
    assert agent.status()["last_error"]  # what the outage was, with its time
    assert agent.status()["last_error_at"]


def test_revoke_closes_the_live_agent_connection(hub: Hub, admin: str, agent: Agent) -> None:
    assert hub.cli("revoke", "web1").returncode == 0
    assert agent.proc.wait(10) == 255
    assert "refused this agent: revoked" in agent.log.read_text()
    assert hub.online(admin) == []
    assert "Traceback" not in agent.log.read_text()


def test_a_second_agent_with_the_same_id_replaces_the_first_at_once(
        hub: Hub, admin: str, agent: Agent, agent_factory: Callable[[str], Agent], tmp_path: Path) -> None:
    clone = agent_factory("web1")
    shutil.copytree(agent.state, clone.state)
    (clone.state / "status.json").unlink()
    clone.start()
    wait_for(clone.connected, 30)
    assert agent.proc.wait(10) == 255
    assert "replaced this one" in agent.log.read_text()
    rows = hub.api("/api/v1/agents", admin)[1]["agents"]
    assert [r["name"] for r in rows if r["online"]] == ["web1"]
    assert clone.connected()


def test_install_writes_a_unit_without_the_token(bridge, agent: Agent, tmp_path: Path) -> None:
    unit = tmp_path / "bridge-agent.service"
    result = bridge("agent", "install", "--state", str(agent.state), "--user", "root", "--path", str(unit))
    assert result.code == 0, result
    text = unit.read_text()
    assert "User=root" in text and f"agent up --state {agent.state}" in text and "--token" not in text
    other = tmp_path / "other.service"
    refused = bridge("agent", "install", "--state", str(agent.state), "--user", "nosuchuser", "--path", str(other))
    assert refused.code == 1 and "no account `nosuchuser`" in refused.err and not other.exists()


def test_status_and_up_without_enrolment_say_what_to_do(bridge, tmp_path: Path) -> None:
    result = bridge("agent", "status", "--state", str(tmp_path / "none"))
    assert result.code == 1 and "no agent has run here" in result.out
    result = bridge("agent", "up", "--state", str(tmp_path / "none"))
    assert result.code == 2 and "not enrolled" in result.err and "hint:" in result.err
