"""ProxyCommand in ~/.ssh/config, as OpenSSH runs it: through a real `ssh -W` jump, a relay script, an
HTTP CONNECT proxy (tinyproxy); tokens, `none`, ProxyJump to a host that has one, push, failures."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import keeper_lock, keeper_pid, write_config
from tests.ssh.peers import tunnel_up
from tests.sshd import free_port, wait_port

RELAY = f"{sys.executable} {Path(__file__).with_name('relay.py')}"


def _config(home, text: str) -> None:
    (home.ssh / "config").write_text(text)


def _target(server, proxy: str, extra: str = "") -> str:
    return f"Host target\n  HostName 127.0.0.1\n  Port {server.port}\n  User root\n  ProxyCommand {proxy}\n{extra}"


def _ws(workspace: Path, url: str = "target:/tmp") -> Path:
    write_config(workspace, f"workspace: w\ndefault: prod\nremotes:\n  prod: {{url: \"{url}\"}}\n")
    return workspace


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not Path(f"/proc/{pid}").exists()


@pytest.mark.parametrize("way", [[], ["--no-reuse"]], ids=["keeper", "direct"])
def test_exec_through_ssh_w_on_a_jump_host(bridge, home, sshd_factory, workspace, way) -> None:
    jump, target = sshd_factory(), sshd_factory()
    ssh = (f"ssh -F /dev/null -i {home.key} -o UserKnownHostsFile={home.ssh / 'known_hosts'} "
           f"-o StrictHostKeyChecking=yes -o BatchMode=yes -p {jump.port} -W %h:%p root@127.0.0.1")
    _config(home, _target(target, ssh))
    result = bridge("exec", *way, "--", "echo", "through the jump", cwd=_ws(workspace))
    assert (result.code, result.out) == (0, "through the jump\n"), result
    assert (jump.accepted_connections(), target.accepted_connections()) == (1, 1)


def test_tokens_come_from_the_final_settings(bridge, home, sshd, workspace, tmp_path) -> None:
    args = tmp_path / "args"
    proxy = f"sh -c 'echo \"$0|$1|$2|$3|%%\" > {args}; exec {RELAY} \"$0\" \"$1\"' %h %p %r %n"
    # ~/.ssh/config says port 1 and user nobody; the URL's port and user win, and %p/%r follow them
    (home.ssh / "config").write_text(f"Host target\n  HostName 127.0.0.1\n  Port 1\n  User nobody\n"
                                     f"  ProxyCommand {proxy}\n")
    result = bridge("exec", "--", "echo", "ok", cwd=_ws(workspace, f"ssh://root@target:{sshd.port}/tmp"))
    assert (result.code, result.out) == (0, "ok\n"), result
    assert args.read_text() == f"127.0.0.1|{sshd.port}|root|target|%\n"


def test_expanded_values_are_shell_quoted() -> None:
    from bridge.ssh.settings import SSHSettings
    from bridge.ssh.stream import expand_proxy_command

    settings = SSHSettings(host="a b", hostname="x;touch /tmp/pwned", port=22, user="$(id)")
    assert expand_proxy_command("nc %h %p # %r %n", settings) == "nc 'x;touch /tmp/pwned' 22 # '$(id)' 'a b'"


def test_unknown_token_is_refused(bridge, home, sshd, workspace) -> None:
    _config(home, _target(sshd, f"{RELAY} %h %p %Z"))
    result = bridge("exec", "--no-reuse", "--", "true", cwd=_ws(workspace))
    assert result.code == 2, result
    assert result.err.splitlines()[0] == f"bridge: error: ~/.ssh/config: ProxyCommand `{RELAY} %h %p %Z`: unknown token %Z"


@pytest.mark.parametrize("way", [[], ["--no-reuse"]], ids=["keeper", "direct"])
def test_a_failing_proxy_command_is_one_line_with_its_stderr(bridge, home, sshd, workspace, way) -> None:
    _config(home, _target(sshd, f"{RELAY} %h 1"))
    result = bridge("exec", *way, "--", "true", cwd=_ws(workspace))
    assert result.code == 255, result
    assert result.err.splitlines()[0] == (f"bridge: error: root@target:{sshd.port}: ProxyCommand `{RELAY} 127.0.0.1 1` "
                                          f"exited 1: relay: cannot connect to 127.0.0.1:1: Connection refused")


def test_a_proxy_command_to_a_non_ssh_peer_says_what_it_sent(bridge, home, workspace) -> None:
    from tests.ssh.peers import http_server

    with http_server() as port:
        _config(home, f"Host target\n  HostName 127.0.0.1\n  Port {port}\n  ProxyCommand {RELAY} %h %p\n")
        result = bridge("exec", "--no-reuse", "--", "true", cwd=_ws(workspace))
    assert result.code == 255, result
    assert result.err.splitlines()[0].endswith('not an SSH server: it sent "<!DOCTYPE HTML>\\n<html lang="en">'
                                               '\\n    <head>\\n        <meta ch"…'), result


def test_proxy_command_none_connects_directly(bridge, home, sshd, workspace) -> None:
    _config(home, _target(sshd, "none") + "Host *\n  ProxyCommand false\n")
    result = bridge("exec", "--", "echo", "direct", cwd=_ws(workspace))
    assert (result.code, result.out) == (0, "direct\n"), result


def test_proxy_jump_to_a_host_that_has_a_proxy_command(bridge, home, sshd_factory, workspace) -> None:
    hop, target = sshd_factory(), sshd_factory()
    _config(home, f"Host target\n  HostName 127.0.0.1\n  Port {target.port}\n  User root\n  ProxyJump hop\n"
                  f"Host hop\n  HostName 127.0.0.1\n  Port {hop.port}\n  User root\n  ProxyCommand {RELAY} %h %p\n")
    result = bridge("exec", "--", "echo", "two hops", cwd=_ws(workspace))
    assert (result.code, result.out) == (0, "two hops\n"), result
    assert (hop.accepted_connections(), target.accepted_connections()) == (1, 1)


def test_the_proxy_process_ends_with_its_connection(bridge, home, sshd, workspace, tmp_path) -> None:
    pidfile = tmp_path / "proxy.pid"
    _config(home, _target(sshd, f"sh -c 'echo $$ > {pidfile}; exec {RELAY} \"$0\" \"$1\"' %h %p"))
    assert bridge("exec", "--", "true", cwd=_ws(workspace)).code == 0
    proxy = int(pidfile.read_text())
    assert Path(f"/proc/{proxy}").exists()  # the keeper keeps the connection, and so its proxy
    runtime = Path(home.env["XDG_RUNTIME_DIR"]) / "bridge"
    keeper = keeper_pid(keeper_lock(runtime))
    os.kill(keeper, signal.SIGTERM)
    assert _gone(keeper) and _gone(proxy)


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A real HTTP CONNECT proxy on loopback (Debian's tinyproxy): (port, its log); stopped by its PID."""
    port, log = free_port(), tmp_path / "tinyproxy.log"
    conf = tmp_path / "tinyproxy.conf"
    conf.write_text(f"Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 60\nLogLevel Connect\n"
                    f"LogFile \"{log}\"\n")
    proc = subprocess.Popen(["tinyproxy", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield port, log
    finally:
        proc.terminate()
        proc.wait(10)


def test_exec_and_push_through_an_http_connect_proxy(bridge, home, sshd, workspace, tinyproxy, tmp_path) -> None:
    from tests.sync.test_push import git, setup_workspace

    port, log = tinyproxy
    _config(home, _target(sshd, f"{RELAY} %h %p 127.0.0.1:{port}"))
    deploy = tmp_path / "deploy"
    assert setup_workspace(bridge, workspace, f"target:{deploy}").code == 0
    pushed = bridge("push", cwd=workspace)
    assert pushed.code == 0, pushed
    assert (deploy / "current" / "app" / "main.py").read_text() == "print('v1')\n"
    assert git(workspace, "rev-parse", "HEAD") in subprocess.run(
        ["git", "--git-dir", str(deploy / "repo.git"), "rev-parse", "main"], capture_output=True, text=True).stdout
    ran = bridge("exec", "--", "cat", "app/main.py", cwd=workspace)
    assert (ran.code, ran.out) == (0, "print('v1')\n"), ran
    assert f"CONNECT 127.0.0.1:{sshd.port} HTTP/1.1" in log.read_text()


def test_tunnel_reaches_its_relay_through_a_proxy_command(home, sshd_factory, workspace, tmp_path) -> None:
    relay, local = sshd_factory(), sshd_factory()
    pidfile, relay_port = tmp_path / "proxy.pid", free_port()
    _config(home, _target(relay, f"sh -c 'echo $$ > {pidfile}; exec {RELAY} \"$0\" \"$1\"' %h %p"))
    write_config(workspace, f"workspace: w\nremotes:\n  relay: {{url: \"ssh://target\"}}\n"
                            f"tunnel:\n  relay: relay\n  forwards: [\"{relay_port}:127.0.0.1:{local.port}\"]\n")
    with tunnel_up(workspace, home.env, tmp_path / "tunnel.log", lambda text: "forwarding " in text) as text:
        assert "connected to root@target" in text and "forwarding " in text, text
        with socket.create_connection(("127.0.0.1", relay_port), timeout=10) as sock:
            assert sock.recv(4) == b"SSH-"  # the local sshd, through the relay's forward
        proxy = int(pidfile.read_text())
    assert _gone(proxy)
