"""nginx (Debian's) in front of the hub, terminating TLS and proxying the WebSocket upgrade: what its idle
timeout (proxy_read_timeout, 60 s by default) does to an idle agent link, and how pings keep it."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import Home
from tests.hub.conftest import Hub, stop, wait_for
from tests.sshd import free_port, wait_port
from tests.sync.test_push import commit, git

pytestmark = pytest.mark.root


def nginx_conf(folder: Path, port: int, hub: Hub, timeouts: str) -> Path:
    """The config README's hub section gives users, on loopback, with `timeouts` added to the location."""
    conf = folder / "nginx.conf"
    conf.write_text(f"""
daemon off; worker_processes 1; pid {folder}/nginx.pid; error_log {folder}/nginx.err; user root root;
events {{ worker_connections 64; }}
http {{
  access_log off; client_body_temp_path {folder}/nb; proxy_temp_path {folder}/np;
  fastcgi_temp_path {folder}/nf; uwsgi_temp_path {folder}/nu; scgi_temp_path {folder}/ns;
  server {{
    listen 127.0.0.1:{port} ssl; ssl_protocols TLSv1.3;
    ssl_certificate {hub.state}/tls.crt; ssl_certificate_key {hub.state}/tls.key;
    location / {{
      proxy_pass https://127.0.0.1:{hub.port}; proxy_http_version 1.1; proxy_ssl_protocols TLSv1.3;
      proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";
      proxy_set_header Host $host; proxy_buffering off; {timeouts}
    }}
  }}
}}
""")
    return conf


def _run_nginx(conf: Path, port: int) -> Iterator[int]:
    proc = subprocess.Popen(["nginx", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 10)
        yield port
    finally:
        stop(proc)


@pytest.fixture
def nginx(hub: Hub, tmp_path: Path) -> Iterator[int]:
    """nginx with a 4 s idle timeout instead of the default 60 s: shows in seconds what pings do against it."""
    port = free_port()
    yield from _run_nginx(nginx_conf(tmp_path, port, hub, "proxy_read_timeout 4s; proxy_send_timeout 4s;"), port)


def test_through_nginx_pings_keep_an_idle_link_alive(hub: Hub, nginx: int, agent_factory, admin: str) -> None:
    agent = agent_factory("web3").start(f"wss://127.0.0.1:{nginx}", hub.token("agent", "web3"))
    wait_for(agent.connected, 30)
    # idle for three times nginx's timeout: only the 1 s pings cross the link
    wait_for(lambda: agent.status()["last_heartbeat_at"] and agent.status()["rtt_ms"] is not None, 10)
    time.sleep(12)
    status = agent.status()
    assert (status["state"], status["connects"]) == ("connected", 1)
    assert hub.online(admin) == ["web3"]


@pytest.fixture
def slow_hub(home: Home, tmp_path: Path) -> Iterator[Hub]:
    """A hub pinging every 90 s, so only an agent's own pings can keep a link through nginx's 60 s."""
    server = Hub(home, tmp_path / "slowhub", free_port(), tmp_path / "slowhub.log", ping=90).start()
    yield server
    server.stop()


@pytest.mark.slow
def test_default_nginx_keeps_a_20s_pinging_agent_and_cuts_a_90s_one_which_comes_back(
        bridge, home: Home, slow_hub: Hub, agent_factory, sshd_factory, tmp_path: Path) -> None:
    """nginx's real default: no timeout in its config. 66 s of idle, then an exec through nginx."""
    port = free_port()
    front = _run_nginx(nginx_conf(tmp_path, port, slow_hub, ""), port)
    next(front)
    try:
        server = sshd_factory(trusted=True)
        hub_url, address = f"wss://127.0.0.1:{port}", f"127.0.0.1:{port}"
        kept = agent_factory("web1").start(hub_url, slow_hub.token("agent", "web1"),
                                           "--ssh", f"127.0.0.1:{server.port}", "--ping", "20")
        cut = agent_factory("web2").start(hub_url, slow_hub.token("agent", "web2"), "--ping", "90")
        wait_for(kept.connected, 30)
        wait_for(cut.connected, 30)
        login = bridge("hub", "login", address, "--token", slow_hub.token("user", "ann", "--role", "operator",
                                                                         "--workspace", "app"))
        assert login.code == 0, login  # nginx shows the hub's own certificate: the token's pin matches it
        workspace, deploy = tmp_path / "ws", tmp_path / "deploy"
        workspace.mkdir()
        deploy.mkdir()
        git(workspace, "init", "-q", "-b", "main")
        (workspace / "bridge.yaml").write_text(
            f"workspace: app\ndefault: edge\nremotes:\n"
            f"  edge: {{url: \"hub://{address}/web1{deploy}\", identity: {json.dumps(str(home.key))}}}\n")
        commit(workspace, {"app/main.py": "print('v1')\n"}, "first")
        assert bridge("test", "--trust", "edge", cwd=workspace).code == 0
        time.sleep(66)  # past nginx's 60 s: web1's 20 s pings crossed it, web2 said nothing
        assert (kept.status()["state"], kept.status()["connects"]) == ("connected", 1)
        wait_for(lambda: cut.status()["connects"] == 2 and cut.connected(), 20)
        said = [line for line in cut.log.read_text().splitlines() if "retrying in" in line]
        assert len(said) == 1 and "Traceback" not in cut.log.read_text(), said
        ran = bridge("exec", "--on", "edge", "--", "echo", "through nginx", cwd=workspace)
        assert (ran.code, ran.out.strip()) == (0, "through nginx"), ran
    finally:
        front.close()
