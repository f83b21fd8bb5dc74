"""Fan-out against real sshd instances: prefixed lines, summary, JSON lines, exit codes across hosts."""
from __future__ import annotations

import json
import time

import pytest

from tests.conftest import write_config
from tests.fleet_probe import probe  # noqa: F401 - fixture

WAYS = {"keeper": [], "direct": ["--no-reuse"]}


def _fleet(sshd_factory, workspace, count: int, extra_config: list[str] | None = None) -> list:
    servers = [sshd_factory(extra_config=extra_config) for _ in range(count)]
    remotes = "".join(f"  h{i:02d}: {{url: \"{s.url('/tmp')}\"}}\n" for i, s in enumerate(servers))
    members = ", ".join(f"h{i:02d}" for i in range(count))
    write_config(workspace, f"workspace: w\nremotes:\n{remotes}groups:\n  web: [{members}]\n")
    return servers


@pytest.mark.parametrize("way", WAYS)
def test_twenty_hosts_two_stopped(bridge, sshd_factory, workspace, way) -> None:
    servers = _fleet(sshd_factory, workspace, 20)
    servers[3].stop()
    servers[17].stop()
    began = time.monotonic()
    result = bridge("exec", *WAYS[way], "--on", "web", "--json", "--", "sh", "-c", "echo up; echo warn >&2",
                    cwd=workspace)
    assert time.monotonic() - began < 30
    assert result.code == 255, result
    rows = [json.loads(line) for line in result.out.splitlines()]
    assert len(rows) == 20 and set(rows[0]) >= {"host", "exit_code", "stdout", "stderr", "duration", "error"}
    down = [r["host"] for r in rows if r["status"] == "unreachable"]
    assert down == ["h03", "h17"]
    up = [r for r in rows if r["status"] == "ok"]
    assert len(up) == 18 and all(r["stdout"] == "up\n" and r["stderr"] == "warn\n" for r in up)
    assert all("cannot connect" in r["error"] for r in rows if r["host"] in down)


@pytest.mark.parametrize("way", WAYS)
def test_prefixed_lines_then_summary_plain_when_piped(bridge, sshd_factory, workspace, way) -> None:
    _fleet(sshd_factory, workspace, 3)
    result = bridge("exec", *WAYS[way], "--on", "h00,h02", "--", "sh", "-c", "echo one; printf two; echo e >&2", cwd=workspace)
    assert result.code == 0, result
    assert sorted(result.out.splitlines()) == ["h00 | one", "h00 | two", "h02 | one", "h02 | two"]
    assert "\x1b[" not in result.out
    assert "h00 | e" in result.err and "host" in result.err and "status" in result.err


@pytest.mark.parametrize("way", WAYS)
def test_a_failure_somewhere_exits_1(bridge, sshd_factory, workspace, way) -> None:
    _fleet(sshd_factory, workspace, 2)
    result = bridge("exec", *WAYS[way], "--on", "all", "--forks", "1", "--", "sh", "-c", "test $(hostname) = never", cwd=workspace)
    assert result.code == 1


def test_stdin_goes_to_every_host_and_keeper_reuses_all(bridge, sshd_factory, workspace) -> None:
    servers = _fleet(sshd_factory, workspace, 3)
    for _ in range(2):
        result = bridge("exec", "--on", "web", "--", "cat", cwd=workspace, input="fed\n")
        assert sorted(result.out.splitlines()) == ["h00 | fed", "h01 | fed", "h02 | fed"], result
    assert [s.accepted_connections() for s in servers] == [1, 1, 1]


@pytest.mark.parametrize("way", WAYS)
def test_forks_1_runs_one_host_at_a_time(bridge, sshd_factory, workspace, probe, way) -> None:
    _fleet(sshd_factory, workspace, 3, extra_config=probe.sshd_config)
    result = bridge("exec", *WAYS[way], "--on", "web", "--forks", "1", "--", "echo", "ran", cwd=workspace)
    assert result.code == 0, result
    assert sorted(result.out.splitlines()) == ["h00 | ran", "h01 | ran", "h02 | ran"]
    seen = probe.seen()
    assert len(seen) >= 3 and max(seen) == 1, seen  # no session ever met another


def test_forks_2_runs_at_most_two_hosts_at_once(bridge, sshd_factory, workspace, probe) -> None:
    _fleet(sshd_factory, workspace, 3, extra_config=probe.sshd_config)
    probe.wait(3)  # a session waits for all three: only a run of all at once could see them
    result = bridge("exec", "--on", "web", "--forks", "2", "--", "true", cwd=workspace)
    assert result.code == 0, result
    assert max(probe.seen()) == 2, probe.seen()


def test_forks_out_of_range_is_refused_before_any_host(bridge, sshd_factory, workspace, probe) -> None:
    _fleet(sshd_factory, workspace, 2, extra_config=probe.sshd_config)
    for args in (["exec", "--on", "web", "--forks", "0", "--", "true"], ["test", "web", "--forks", "0"]):
        result = bridge(*args, cwd=workspace)
        assert result.code == 2 and "--forks 0 is out of range" in result.err, (args, result)
    assert probe.seen() == []
