"""The keeper under bad requests and faults: one request cannot wedge it for the others, its death
mid-run is reported truthfully, and each environment (HOME, BRIDGE_*) gets a keeper of its own."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import BRIDGE, keeper_lock, keeper_pid, write_config
from tests.exec.exec_fixtures import Target, target  # noqa: F401 - fixture
from tests.ssh.peers import raw_server


def _runtime(home) -> Path:
    return Path(home.env["XDG_RUNTIME_DIR"]) / "bridge"


def _add_remote(target: Target, name: str, url: str, extra: str = "") -> None:
    text = (target.workspace / "bridge.yaml").read_text()
    write_config(target.workspace, text.replace("remotes:\n", f"remotes:\n  {name}: {{url: \"{url}\"{extra}}}\n"))


def test_a_bad_connect_timeout_fails_its_own_run_and_the_keeper_serves_on(target: Target, home) -> None:
    # ~/.ssh/config, not bridge.yaml: no load-time check of bridge.yaml sees it, the SSH layer must
    (home.ssh / "config").write_text(f"Host badtimeout\n  HostName 127.0.0.1\n  ConnectTimeout -1\n")
    _add_remote(target, "bad", f"ssh://root@badtimeout:{target.server.port}/tmp")
    assert target.exec("--", "echo", "first").out == "first\n"
    pid = keeper_pid(keeper_lock(_runtime(home)))
    for way in ([], ["--no-reuse"]):
        bad = target.exec(*way, "bad", "--", "true")
        assert bad.code == 2, bad
        assert bad.err.splitlines()[0] == "bridge: error: ConnectTimeout in ~/.ssh/config: '-1' is not a timeout"
    again = target.exec("--", "echo", "still served")
    assert (again.code, again.out) == (0, "still served\n"), again
    assert keeper_pid(keeper_lock(_runtime(home))) == pid
    assert target.server.accepted_connections() == 1


def test_bridge_yaml_negative_connect_timeout_is_one_line(target: Target) -> None:
    _add_remote(target, "bad", target.server.url("/tmp"), ", connect_timeout: -1")
    for way in ([], ["--no-reuse"]):
        result = target.exec(*way, "bad", "--", "true")
        assert result.code == 2, result
        assert "connect_timeout" in result.err.splitlines()[0] and len(result.err.splitlines()) <= 2, result


def test_a_stalled_handshake_is_bounded_and_blocks_no_one_else(target: Target, home) -> None:
    with raw_server(b"") as port:
        _add_remote(target, "stall", f"ssh://root@127.0.0.1:{port}/tmp", ", connect_timeout: 3")
        assert target.exec("--", "true").code == 0  # the keeper is up
        stalled = subprocess.Popen([*BRIDGE, "exec", "stall", "--", "true"], cwd=target.workspace, env=home.env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        others = [target.exec("--", "echo", str(i)) for i in range(3)]
        code, err = stalled.wait(60), stalled.stderr.read().decode()
    assert [(r.code, r.out) for r in others] == [(0, "0\n"), (0, "1\n"), (0, "2\n")]
    assert code == 255, err
    assert err.splitlines()[0].endswith("no SSH handshake within 3s: the peer accepted the connection and sent nothing")
    assert target.server.accepted_connections() == 1


def test_keeper_killed_mid_run_says_the_command_may_still_run(target: Target, home) -> None:
    pidfile = target.deploy / "remote.pid"
    proc = subprocess.Popen([*BRIDGE, "exec", "--", "sh", "-c", f"echo $$ > {pidfile}; echo started; exec sleep 300"],
                            cwd=target.workspace, env=home.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"started\n"
        os.kill(keeper_pid(keeper_lock(_runtime(home))), signal.SIGKILL)
        assert proc.wait(30) == 255
        err = proc.stderr.read().decode()
        assert err.startswith("bridge: error: the connection keeper went away mid-run: the command may still be "
                              "running on the default remote\n  hint: check there"), err
        remote = int(pidfile.read_text())
        # sshd sends no signal to a session's command when its connection drops: the message is the truth
        assert Path(f"/proc/{remote}").exists()
    finally:
        if pidfile.exists():
            _stop(int(pidfile.read_text()))


def test_each_environment_gets_a_warm_keeper(target: Target, home) -> None:
    other = {"BRIDGE_FORKS": "7"}
    for env in ({}, other, {}, other):
        result = target.exec("--", "echo", "hi", env=env)
        assert (result.code, result.out) == (0, "hi\n"), result
    locks = sorted(_runtime(home).glob("keeper-*.lock"))
    assert len(locks) == 2 and len({keeper_pid(lock) for lock in locks}) == 2
    assert target.server.accepted_connections() == 2  # one handshake per keeper, none on a cold path


def _stop(pid: int) -> None:
    """End a process this test started on the server (by PID), and wait for it to go."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
