"""Faults with real components: a firewalled agent in a network namespace (outbound to the hub port only), a
silent cut, nginx and a CONNECT proxy in front, malformed and oversized frames, a user revoked mid-session."""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from bridge import hublink
from tests.conftest import Home
from tests.hub.conftest import PING, Agent, Hub, stop, wait_for
from tests.hub.test_remote import Scene, _trust, scene  # noqa: F401 - the fixture
from tests.sshd import free_port, wait_port
from tests.tunnel.netns import Namespace

pytestmark = pytest.mark.root


@pytest.fixture
def ns(hub: Hub) -> Iterator[Namespace]:
    """A namespace that may open connections only to the hub's port on the host, and accepts none."""
    space = Namespace.create()
    try:
        space.firewall()
        for rule in (["-o", "lo", "-j", "ACCEPT"], ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
                     ["-p", "tcp", "-d", space.host_ip, "--dport", str(hub.port), "-j", "ACCEPT"], ["-j", "DROP"]):
            space.exec_check(["iptables", "-A", "OUTPUT", *rule])
        yield space
    finally:
        space.destroy()


@pytest.fixture
def wide_hub(home: Home, tmp_path: Path, hub: Hub) -> Iterator[Hub]:
    """The hub again, listening on every address so the namespace reaches it (same port, state and pin)."""
    hub.stop()
    wide = Hub(home, hub.state, hub.port, tmp_path / "wide.log", host="0.0.0.0").start()
    yield wide
    wide.stop()


def _blocked(ns: Namespace, port: int) -> bool:
    probe = subprocess.run(ns.argv(["timeout", "3", "bash", "-c", f"exec 3<>/dev/tcp/{ns.host_ip}/{port}"]),
                           capture_output=True)
    return probe.returncode != 0


def test_a_firewalled_agent_dials_out_and_a_silent_cut_is_noticed_within_two_pings(
        ns: Namespace, wide_hub: Hub, agent_factory: Callable[[str], Agent]) -> None:
    admin = wide_hub.token("user", "adm", "--role", "admin")
    agent = agent_factory("edge1").start(f"wss://{ns.host_ip}:{wide_hub.port}", wide_hub.token("agent", "edge1"),
                                         prefix=tuple(ns.argv([])))
    wait_for(agent.connected, 30)
    assert _blocked(ns, free_port())  # nothing but the hub's port gets out
    assert wide_hub.online(admin) == ["edge1"]
    ns.cut()  # packets dropped both ways: no RST, no FIN
    wait_for(lambda: agent.status()["state"] != "connected", 2 * PING + 2)
    wait_for(lambda: wide_hub.online(admin) == [], 2 * PING + 2)  # the hub keeps no stale session either
    assert agent.status()["last_error"]
    ns.heal()
    wait_for(lambda: agent.connected() and agent.status()["reconnects"] >= 1, 30)
    assert wide_hub.online(admin) == ["edge1"]


def test_a_returning_agent_replaces_its_half_open_session_at_once(home: Home, tmp_path: Path, hub: Hub, ns: Namespace,
                                                                  agent_factory: Callable[[str], Agent]) -> None:
    """A NAT that forgot the agent's flow: the agent notices within two of its pings and dials again while the
    hub, pinging every 30 s, still holds the old session. The hub takes the new one at once (chisel #445:
    the old one held its port ~10 minutes). The old socket itself goes ~40 s later: uvicorn's 10 s wait for
    a closing handshake, then asyncio's 30 s TLS shutdown timeout."""
    hub.stop()
    slow = Hub(home, hub.state, hub.port, tmp_path / "slow.log", host="0.0.0.0", ping=30).start()
    try:
        admin = slow.token("user", "adm", "--role", "admin")
        agent = agent_factory("edge2").start(f"wss://{ns.host_ip}:{slow.port}", slow.token("agent", "edge2"),
                                             prefix=tuple(ns.argv([])))
        wait_for(agent.connected, 30)
        first = slow.api("/api/v1/agents", admin)[1]["agents"][0]["connected_since"]
        ns.strand(ns.flows_to(slow.port))  # the old flow black-holed, new ones pass
        wait_for(lambda: agent.status()["reconnects"] >= 1 and agent.connected(), 2 * PING + 15)
        rows = slow.api("/api/v1/agents", admin)[1]["agents"]
        assert [r["name"] for r in rows if r["online"]] == ["edge2"] and rows[0]["connected_since"] > first
        assert agent.status()["connects"] == 2  # not refused, not retried: taken the first time
    finally:
        slow.stop()


def _raw(hub: Hub, path: str) -> object:
    from websockets.sync.client import connect

    ws = connect(hublink.HubAddress(hub.host, hub.port).url(path), ssl=hublink.client_context(), proxy=None, legacy=True)
    hublink.check_pin(ws.socket, hub.fingerprint, hublink.HubAddress(hub.host, hub.port))
    return ws


def _close_code(ws: object, send: str | bytes | None) -> int | None:
    from websockets.exceptions import ConnectionClosed

    try:
        if send is not None:
            ws.send(send)
        ws.recv(timeout=10)
    except ConnectionClosed as e:
        return e.rcvd.code if e.rcvd else None
    return None


def test_malformed_and_oversized_frames_are_refused_and_the_hub_carries_on(hub: Hub, admin: str) -> None:
    assert _close_code(_raw(hub, "/ws/agent"), "not json") == hublink.CLOSE_BAD_REQUEST
    assert _close_code(_raw(hub, "/ws/agent"), json.dumps({"type": "hello", "auth": "x.y.z"})) == \
        hublink.CLOSE_UNAUTHORIZED
    assert _close_code(_raw(hub, "/ws/connect"), b"\xff" * 10) == hublink.CLOSE_BAD_REQUEST
    assert _close_code(_raw(hub, "/ws/stream"), json.dumps({"stream": "nope", "auth": "x"})) == \
        hublink.CLOSE_UNAUTHORIZED
    # only the header of a frame too big: the hub must refuse it from its length (sending the body raced
    # the hub's close, whose reset could lose its close frame)
    big = _raw(hub, "/ws/agent")
    big.socket.sendall(struct.pack("!BBQ", 0x82, 0x80 | 127, hublink.MAX_MESSAGE + 1) + b"mask")
    assert _close_code(big, None) == 1009  # message too big
    assert hub.api("/api/v1/agents", admin)[0] == 200
    assert "Traceback" not in hub.log.read_text()


def test_revoking_a_user_closes_their_live_session(scene: Scene) -> None:
    _trust(scene)
    running = subprocess.Popen([*_bridge_argv(), "exec", "--on", "edge", "--", "sleep", "60"], cwd=scene.workspace,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**scene.agent.home.env, "BRIDGE_NO_REUSE": "1"})
    try:
        wait_for(lambda: scene.agent.status()["streams"] >= 1, 30)
        assert scene.hub.cli("revoke", "ann").returncode == 0
        assert running.wait(10) == 255
        assert b"Traceback" not in running.stderr.read()
    finally:
        stop(running)


def _bridge_argv() -> list[str]:
    from tests.conftest import BRIDGE

    return BRIDGE


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """tinyproxy (Debian's) as an HTTP CONNECT proxy on loopback; its log shows each CONNECT."""
    port, log = free_port(), tmp_path / "tinyproxy.log"
    conf = tmp_path / "tinyproxy.conf"
    conf.write_text(f"Port {port}\nListen 127.0.0.1\nTimeout 600\nLogFile \"{log}\"\nLogLevel Connect\n"
                    f"Allow 127.0.0.1\nMaxClients 50\nUser root\nGroup root\nPidFile \"{tmp_path}/tinyproxy.pid\"\n")
    proc = subprocess.Popen(["tinyproxy", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 10)
        yield port, log
    finally:
        stop(proc)


def test_agent_and_client_through_a_connect_proxy(scene: Scene, proxy: tuple[int, Path],
                                                  agent_factory) -> None:
    port, log = proxy
    env = {"https_proxy": f"http://127.0.0.1:{port}", "no_proxy": ""}
    scene.agent.stop()
    again = Agent(scene.agent.home, scene.agent.state, scene.agent.log).start(
        None, None, "--ssh", f"127.0.0.1:{scene.server.port}", env=env)
    try:
        wait_for(again.connected, 30)
        _trust(scene)
        ran = scene("exec", "--on", "edge", "--", "echo", "via proxy", env={**env, "BRIDGE_NO_REUSE": "1"})
        assert (ran.code, ran.out) == (0, "via proxy\n"), ran
        assert log.read_text().count(f"CONNECT 127.0.0.1:{scene.hub.port}") >= 2  # the agent's and the client's
    finally:
        again.stop()


@pytest.fixture
def silent_hub(tmp_path: Path) -> Iterator[int]:
    """A TLS 1.3 server that finishes the handshake (so its session tickets arrive) and then never answers."""
    import socket
    import ssl
    import threading

    from bridge.hub.cert import ensure_self_signed

    files = ensure_self_signed(tmp_path / "silent", ["localhost"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert, files.key)
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
                held.append(context.wrap_socket(raw, server_side=True))
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()
    for sock in held:
        sock.close()


def test_a_hub_that_never_answers_the_upgrade_is_one_line_not_a_hang(silent_hub: int, bridge, tmp_path: Path) -> None:
    import base64

    claims = base64.urlsafe_b64encode(json.dumps({"typ": "user", "fp": "sha256:00"}).encode()).decode().rstrip("=")
    (tmp_path / "bridge.yaml").write_text(f"workspace: app\nremotes:\n  edge: {{url: \"hub://127.0.0.1:{silent_hub}"
                                          f"/web1/tmp\"}}\n")
    result = bridge("exec", "--on", "edge", "--", "true", cwd=tmp_path, env={"BRIDGE_HUB_TOKEN": f"e30.{claims}.x"},
                    timeout=60)  # websockets' own open_timeout alone left this waiting forever
    assert result.code == 255, result
    assert "cannot connect to hub" in result.err and "Traceback" not in result.err
    assert "no answer to the WebSocket upgrade within" in result.err  # the hop that was silent: not TLS


def test_an_agent_whose_clock_runs_behind_is_refused_naming_the_clock(hub: Hub, agent: Agent) -> None:
    """What an agent ten minutes behind sends: its own key's token, already expired by the hub's clock."""
    from joserfc import jwt
    from joserfc.jwk import OKPKey

    past = int(time.time()) - 600
    claims = {"typ": "agent", "sub": "web1", "aud": hublink.AUDIENCE, "iat": past, "exp": past + 60, "jti": "skew"}
    token = jwt.encode({"alg": hublink.ALGORITHM}, claims, OKPKey.import_key((agent.state / "agent.key").read_bytes()),
                       algorithms=[hublink.ALGORITHM])
    ws = _raw(hub, "/ws/agent")
    from websockets.exceptions import ConnectionClosed

    with pytest.raises(ConnectionClosed) as closed:
        ws.send(json.dumps({"type": "hello", "agent": "web1", "auth": token}))
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
        hublink.CLOSE_UNAUTHORIZED, "agent token expired: the agent's clock is behind the hub's")
    assert agent.connected()  # the real agent, with a right clock, is not disturbed


def _closed_with(ws: object, within: float) -> tuple[int, str] | None:
    """The close code and reason the hub sends `ws` within `within` seconds (pings are answered meanwhile)."""
    from websockets.exceptions import ConnectionClosed

    try:
        while True:
            ws.recv(timeout=within)  # type: ignore[attr-defined]
    except ConnectionClosed as e:
        return (e.rcvd.code, e.rcvd.reason) if e.rcvd else None


def test_an_agent_silent_or_garbled_before_or_after_its_welcome_is_closed_and_the_hub_carries_on(
        hub: Hub, admin: str, agent_factory: Callable[[str], Agent]) -> None:
    """A stuck or broken agent (here a raw client with a real agent's key) costs the hub one socket for a
    bounded time, with a reason, and nothing else."""
    enrolled = agent_factory("web9").start(hub.url, hub.token("agent", "web9"))
    wait_for(enrolled.connected, 30)
    enrolled.stop()
    key = (enrolled.state / "agent.key").read_bytes()

    def welcomed() -> object:
        ws = _raw(hub, "/ws/agent")
        ws.send(json.dumps({"type": "hello", "agent": "web9", "auth": hublink.sign_agent_token(key, "web9")}))
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        return ws

    # silent after its welcome: closed at two pings, with the reason
    assert _closed_with(welcomed(), 2 * PING + 5) == (hublink.CLOSE_UNAVAILABLE, "no heartbeat")
    garbled = welcomed()
    garbled.send("not json")
    assert _closed_with(garbled, 10) == (hublink.CLOSE_BAD_REQUEST, "malformed message")
    assert _closed_with(_raw(hub, "/ws/agent"), 15) == (hublink.CLOSE_BAD_REQUEST, "no hello within 10 s")
    assert hub.online(admin) == []
    assert "Traceback" not in hub.log.read_text()


def test_an_expired_user_token_is_one_line_with_the_next_step(scene: Scene) -> None:
    from bridge.hub.store import Store
    from bridge.hub.tokens import Signer

    _trust(scene)
    signer = Signer(scene.hub.state, Store(scene.hub.state / "hub.db"), scene.hub.fingerprint)
    expired = signer.user("ann", "operator", ["app"], ttl=-120)  # issued as if two minutes ago it ran out
    result = scene("exec", "--on", "edge", "--", "true", env={"BRIDGE_HUB_TOKEN": expired, **NO_REUSE})
    assert result.code == 255
    assert "token refused: expired" in result.err and "fresh token" in result.err
    assert len([line for line in result.err.splitlines() if line.strip()]) <= 2, result.err  # the line and its hint


NO_REUSE = {"BRIDGE_NO_REUSE": "1"}


def test_a_hub_restart_mid_transfer_is_one_line_and_the_agent_comes_back(scene: Scene) -> None:
    _trust(scene)
    reader = subprocess.Popen([*_bridge_argv(), "exec", "--on", "edge", "--", "head", "-c", "2000000000", "/dev/zero"],
                              cwd=scene.workspace, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**scene.agent.home.env, **NO_REUSE})
    try:
        assert reader.stdout is not None
        got = 0
        while got < 10 << 20:  # bytes are flowing through the hub
            got += len(reader.stdout.read(1 << 20))
        scene.hub.stop()
        while reader.stdout.read(1 << 20):
            pass
        assert reader.wait(30) == 255
        err = reader.stderr.read().decode() if reader.stderr else ""
        assert "Traceback" not in err and 1 <= len([line for line in err.splitlines() if line.strip()]) <= 2, err
    finally:
        stop(reader)
    scene.hub.start()
    wait_for(lambda: scene.agent.connected() and scene.agent.status()["reconnects"] >= 1, 30)
    again = scene("exec", "--on", "edge", "--", "echo", "back", env=NO_REUSE)
    assert (again.code, again.out) == (0, "back\n"), again


@pytest.fixture
def short_proxy(tmp_path: Path) -> Iterator[int]:
    """tinyproxy closing any connection idle for 3 s (as a corporate proxy might, only sooner)."""
    port = free_port()
    conf = tmp_path / "tinyproxy-short.conf"
    conf.write_text(f"Port {port}\nListen 127.0.0.1\nTimeout 3\nAllow 127.0.0.1\nMaxClients 50\nUser root\n"
                    f"Group root\nPidFile \"{tmp_path}/tinyproxy-short.pid\"\n")
    proc = subprocess.Popen(["tinyproxy", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 10)
        yield port
    finally:
        stop(proc)


def test_pings_keep_a_link_through_a_proxy_with_a_short_idle_timeout(hub: Hub, short_proxy: int,
                                                                      agent_factory, admin: str) -> None:
    env = {"https_proxy": f"http://127.0.0.1:{short_proxy}", "no_proxy": ""}
    agent = agent_factory("web4").start(hub.url, hub.token("agent", "web4"), env=env)
    wait_for(agent.connected, 30)
    time.sleep(10)  # over three of the proxy's idle timeouts: only the 1 s pings cross
    status = agent.status()
    assert (status["state"], status["connects"]) == ("connected", 1)
    assert hub.online(admin) == ["web4"]


def _fds_and_threads(pid: int) -> tuple[int, int]:
    return len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task"))


def _storm(scene: Scene, count: int = 8) -> None:
    """`count` clients through the hub, all killed at once while streaming or still connecting."""
    doomed = [subprocess.Popen([*_bridge_argv(), "exec", "--on", "edge", "--", "head", "-c", "500000000", "/dev/zero"],
                               cwd=scene.workspace, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**scene.agent.home.env, **NO_REUSE}) for _ in range(count)]
    wait_for(lambda: scene.agent.status()["streams"] >= 2, 60)
    time.sleep(2)  # more of them are streaming by now
    for proc in doomed:
        os.kill(proc.pid, signal.SIGKILL)  # no goodbye: their connections to the hub just close
        proc.wait()
    wait_for(lambda: scene.agent.status()["streams"] == 0, 30)


def test_a_storm_of_vanished_clients_leaks_no_fd_or_thread_in_the_hub(scene: Scene) -> None:
    _trust(scene)
    assert scene.hub.proc is not None
    pid = scene.hub.proc.pid
    # The hub's blocking calls run on asyncio's default executor, which grows on demand up to
    # min(32, cpus + 4) threads and keeps them: beyond the main thread, that is all a hub may hold.
    threads_cap = 1 + min(32, (os.cpu_count() or 1) + 4)
    _storm(scene)
    time.sleep(1)
    before = _fds_and_threads(pid)
    for _ in range(2):  # a leak of one fd or thread per client would show as 8 more each time
        _storm(scene)

    def settled() -> bool:
        fds, threads = _fds_and_threads(pid)
        return fds <= before[0] and threads <= threads_cap

    try:
        wait_for(settled, 30)
    except AssertionError:
        raise AssertionError(f"fds and threads {_fds_and_threads(pid)}, before {before}, thread cap {threads_cap}")
    assert scene("exec", "--on", "edge", "--", "echo", "ok", env=NO_REUSE).out == "ok\n"
