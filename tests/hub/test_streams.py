"""Streams through one agent: many at once, each with its own flow control; a vanished client leaks nothing."""
from __future__ import annotations

import os
import signal
import subprocess
import threading

from tests.conftest import BRIDGE
from tests.hub.conftest import wait_for
from tests.hub.test_remote import Scene, _trust, scene  # noqa: F401 - the fixture

NO_REUSE = {"BRIDGE_NO_REUSE": "1"}  # one SSH connection, so one hub stream, per run


def _spawn(scene: Scene, *command: str, env: dict | None = None, stdout=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen([*BRIDGE, "exec", "--on", "edge", "--", *command], cwd=scene.workspace,
                            stdout=stdout, stderr=subprocess.PIPE, env={**scene.agent.home.env, **(env or {})})


def test_many_sessions_at_once_over_one_agent_connection(scene: Scene) -> None:
    _trust(scene)
    runs = [_spawn(scene, "sh", "-c", f"echo run{i}; exit {i % 3}", env=NO_REUSE) for i in range(8)]
    results = [(run.wait(120), run.stdout.read().decode()) for run in runs]
    assert results == [(i % 3, f"run{i}\n") for i in range(8)]
    assert scene.agent.status()["reconnects"] == 0  # all over the one control connection


def test_a_stalled_reader_of_a_200mb_stream_does_not_hold_up_another_session(scene: Scene) -> None:
    _trust(scene)
    stalled = _spawn(scene, "head", "-c", "200000000", "/dev/zero", env=NO_REUSE)  # its stdout is never read
    try:
        wait_for(lambda: scene.agent.status()["streams"] >= 1, 30)
        other = scene("exec", "--on", "edge", "--", "echo", "still here", env=NO_REUSE)
        assert (other.code, other.out) == (0, "still here\n")
        assert stalled.poll() is None  # the big stream is held back, not buffered into memory somewhere
    finally:
        stalled.kill()
        stalled.wait()


def test_200mb_arrive_whole(scene: Scene) -> None:
    _trust(scene)
    run = _spawn(scene, "head", "-c", "200000000", "/dev/zero", env=NO_REUSE)
    total = 0
    while chunk := run.stdout.read(1 << 20):
        total += len(chunk)
    assert run.wait(120) == 0 and total == 200_000_000


def test_a_client_that_vanishes_mid_stream_leaks_no_stream(scene: Scene) -> None:
    _trust(scene)
    doomed = _spawn(scene, "head", "-c", "200000000", "/dev/zero", env=NO_REUSE, stdout=subprocess.DEVNULL)
    wait_for(lambda: scene.agent.status()["streams"] >= 1, 30)
    os.kill(doomed.pid, signal.SIGKILL)  # no goodbye: its TCP connection to the hub just closes
    doomed.wait()
    wait_for(lambda: scene.agent.status()["streams"] == 0, 30)
    after = scene("exec", "--on", "edge", "--", "echo", "ok", env=NO_REUSE)
    assert (after.code, after.out) == (0, "ok\n")
    assert scene.agent.status()["reconnects"] == 0


def test_an_agent_whose_sshd_is_down_says_so_and_the_client_hears_which_hop(scene: Scene) -> None:
    _trust(scene)
    scene.server.stop()
    refused = scene("exec", "--on", "edge", "--", "true", env=NO_REUSE)
    assert refused.code == 255 and "did not open the stream" in refused.err and "Traceback" not in refused.err
    port = scene.server.port
    wait_for(lambda: f"stream not opened: cannot reach sshd at 127.0.0.1:{port}" in scene.agent.log.read_text(), 10)
    assert scene.agent.status()["reconnects"] == 0  # one stream failing leaves the control connection up


def test_the_hub_sockets_of_a_process_share_one_io_thread(scene: Scene, monkeypatch) -> None:
    """Every TLS read and write of the CLI's hub sockets happens on one thread: OpenSSL does not allow one
    connection to be used from two threads at once (websockets' sync client read in one and wrote in
    another, and behind nginx, which sends session tickets, it now and then lost the upgrade)."""
    from bridge.ssh.hubsock import hub_socket
    from bridge.ssh.settings import HubRoute

    for key in ("HOME", "XDG_CONFIG_HOME"):  # this process reads the scene's hub login, as the CLI would
        if key in scene.agent.home.env:
            monkeypatch.setenv(key, scene.agent.home.env[key])
    host, port = scene.hub.address.rsplit(":", 1)
    before = {thread.ident for thread in threading.enumerate()}
    socks = [hub_socket(HubRoute(host, int(port), "web1", "app"), 10) for _ in range(3)]
    try:
        for sock in socks:  # each is a live stream to the agent's sshd
            sock.settimeout(10)
            banner = b""
            while len(banner) < 8 and (data := sock.recv(8 - len(banner))):
                banner += data
            assert banner == b"SSH-2.0-"
        started = {thread.name for thread in threading.enumerate() if thread.ident not in before}
        assert started <= {"bridge-hub"}, started
        assert [thread.name for thread in threading.enumerate()].count("bridge-hub") == 1
    finally:
        for sock in socks:
            sock.close()
