"""A peer that is not (or not yet) an SSH server: one line saying what happened and what it sent,
the same for exec, push, `bridge test` and the tunnel's log; exit 255 as for any unreachable host."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.ssh.peers import PEERS, tunnel_up


@pytest.fixture(params=list(PEERS))
def peer(request):
    start, args, expected = PEERS[request.param]
    with start(*args) as port:
        yield port, expected


def _remote(workspace: Path, port: int, extra: str = "") -> None:
    write_config(workspace, f"workspace: w\ndefault: prod\nremotes:\n"
                            f"  prod: {{url: \"ssh://root@127.0.0.1:{port}/tmp/w\", connect_timeout: 2}}\n{extra}")


def _one_line_error(err: str, expected: tuple[str, ...]) -> None:
    """The error line, then at most its hint."""
    lines = err.splitlines()
    assert lines and all(text in lines[0] for text in expected), err
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("  hint: ")), err
    assert "No existing session" not in err and "protocol banner" not in err


@pytest.mark.parametrize("way", [[], ["--no-reuse"]], ids=["keeper", "direct"])
def test_exec_says_what_the_peer_sent(bridge, workspace, peer, way) -> None:
    port, expected = peer
    _remote(workspace, port)
    result = bridge("exec", *way, "--", "true", cwd=workspace)
    assert result.code == 255, result
    _one_line_error(result.err, expected)


def test_push_says_what_the_peer_sent(bridge, workspace, peer) -> None:
    port, expected = peer
    _remote(workspace, port)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=workspace, check=True)
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "one"], cwd=workspace, check=True)
    result = bridge("push", cwd=workspace)
    assert result.code == 255, result
    _one_line_error(result.err, expected)


def test_bridge_test_says_what_the_peer_sent(bridge, workspace, peer) -> None:
    port, expected = peer
    _remote(workspace, port)
    result = bridge("test", "--json", cwd=workspace)
    assert result.code == 255, result
    failed = [c for c in json.loads(result.out)[0]["checks"] if c["ok"] is False]
    assert [c["name"] for c in failed] == ["reachable"], result
    assert all(text in failed[0]["detail"] for text in expected), result
    assert result.err == "", result


def test_tunnel_log_says_what_the_peer_sent(home, workspace, peer) -> None:
    port, expected = peer
    _remote(workspace, port, "tunnel:\n  relay: prod\n  forwards: [\"1:127.0.0.1:1\"]\n  keepalive: 1\n"
                             "  backoff_cap: 1\n")
    with tunnel_up(workspace, home.env, workspace / "tunnel.log", lambda text: text.count("retrying in") >= 2) as text:
        pass
    errors = [line for line in text.splitlines() if "error:" in line]
    assert len(errors) >= 2, text
    assert all(all(t in line for t in expected) for line in errors), text
    assert "Traceback" not in text and "No existing session" not in text, text
