"""End to end through a real sshd: authorized_keys lines written by `bridge keys add`, plain ssh clients."""
from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.security import audit
from tests.conftest import Home, Result, free_port, wait_port
from tests.security.conftest import audit_lines

DENIED = ["sudo id", "ls; sudo id", "echo $(sudo id)", "echo `sudo id`", "env sudo id", "sh -c 'sudo id'",
          "/usr/bin/sudo id", "true | sudo id", "(sudo id)", "nice sudo id", "su -c id"]


@pytest.fixture
def server(sshd_factory: Callable, tmp_path: Path):
    """A real sshd whose sessions find the test policy and audit log through SetEnv."""
    policy = tmp_path / "policy.yaml"
    policy.write_text("users: {}\n")
    log = tmp_path / "server-log" / "audit.jsonl"
    srv = sshd_factory(extra_config=[f"SetEnv BRIDGE_POLICY={policy} BRIDGE_AUDIT_LOG={log}"])
    srv.audit_log = log
    return srv


def grant(sec: Callable[..., Result], home: Home, server, role: str) -> None:
    result = sec("keys", "add", server.user, "--role", role, "--key", f"@{home.key}.pub",
                 "--file", str(server.authorized_keys))
    assert result.code == 0, result


def ssh_argv(home: Home, server, *extra: str) -> list[str]:
    return ["ssh", "-F", "/dev/null", "-i", str(home.key), "-p", str(server.port), "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={home.ssh / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
            *extra, f"{server.user}@{server.host}"]


def ssh(home: Home, server, command: str) -> subprocess.CompletedProcess:
    return subprocess.run([*ssh_argv(home, server), command], capture_output=True, env=home.env,
                          timeout=60, stdin=subprocess.DEVNULL)


def test_operator_key_runs_ls_but_not_sudo(sec, home: Home, server) -> None:
    grant(sec, home, server, "operator")
    ok = ssh(home, server, "ls /")
    assert ok.returncode == 0 and b"etc" in ok.stdout.split()
    for cmdline in DENIED:
        refused = ssh(home, server, cmdline)
        assert refused.returncode == 126, (cmdline, refused)
        assert refused.stdout == b"" and b"rule operator.no-sudo" in refused.stderr
    entries = audit_lines(server.audit_log)
    assert [e["decision"] for e in entries] == ["allowed"] + ["denied"] * len(DENIED)
    assert [e["command"] for e in entries[1:]] == DENIED
    assert audit.verify(server.audit_log).ok
    assert sec("audit", "verify", str(server.audit_log)).code == 0


def test_operator_cannot_forward_ports(sec, home: Home, server) -> None:
    grant(sec, home, server, "operator")
    remote = subprocess.run([*ssh_argv(home, server, "-N", "-o", "ExitOnForwardFailure=yes",
                                       "-R", f"{free_port()}:127.0.0.1:{server.port}")],
                            capture_output=True, env=home.env, timeout=60)
    assert remote.returncode == 255 and b"forwarding failed" in remote.stderr
    local_port = free_port()
    proc = subprocess.Popen([*ssh_argv(home, server, "-N", "-L", f"{local_port}:127.0.0.1:{server.port}")],
                            env=home.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(local_port)
        assert _banner(local_port) == b"", "a forwarded connection reached sshd through the tunnel"
    finally:
        _stop(proc)
    grant(sec, home, server, "admin")  # the same probe succeeds once the role may forward
    proc = subprocess.Popen([*ssh_argv(home, server, "-N", "-L", f"{local_port}:127.0.0.1:{server.port}")],
                            env=home.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(local_port)
        assert _banner(local_port).startswith(b"SSH-2.0-")
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """End the ssh client we started, by its PID."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _banner(port: int) -> bytes:
    """What arrives on a local forward within a few seconds: sshd's banner only if forwarding works."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        deadline = time.monotonic() + 5
        data = b""
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(100)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
        return data


def test_viewer_cannot_exec_admin_can(sec, home: Home, server) -> None:
    grant(sec, home, server, "viewer")
    viewer = ssh(home, server, "id -u")
    assert viewer.returncode == 126 and b"rule viewer.no-exec" in viewer.stderr
    grant(sec, home, server, "admin")
    admin = ssh(home, server, "id -u")
    assert admin.returncode == 0 and admin.stdout.strip().isdigit()
    assert ssh(home, server, "sudo -n true 2>/dev/null; true").returncode == 0
    assert [(e["action"], e["decision"]) for e in audit_lines(server.audit_log)] == [
        ("exec", "denied"), ("exec", "allowed"), ("exec", "allowed")]


def test_git_push_only_into_allowed_workspace(sec, home: Home, sshd_factory: Callable, tmp_path: Path) -> None:
    mine, other = tmp_path / "srv/app", tmp_path / "srv/other"
    for ws in (mine, other):
        subprocess.run(["git", "init", "-q", "--bare", str(ws / "repo.git")], check=True)
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"users:\n  root: {{role: operator, workspaces: ['{mine}']}}\n")
    log = tmp_path / "log" / "audit.jsonl"
    server = sshd_factory(extra_config=[f"SetEnv BRIDGE_POLICY={policy} BRIDGE_AUDIT_LOG={log}"])
    grant(sec, home, server, "operator")
    work = tmp_path / "work"
    git = ["git", "-C", str(work)]
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    (work / "a.txt").write_text("a\n")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True, env=home.env)
    env = {**home.env, "GIT_SSH_COMMAND": " ".join(ssh_argv(home, server)[:-1])}
    ok = subprocess.run([*git, "push", server.url(f"{mine}/repo.git"), "HEAD:refs/heads/main"],
                        capture_output=True, env=env, timeout=60)
    assert ok.returncode == 0, ok.stderr
    refused = subprocess.run([*git, "push", server.url(f"{other}/repo.git"), "HEAD:refs/heads/main"],
                             capture_output=True, env=env, timeout=60)
    assert refused.returncode != 0 and b"rule operator.workspaces" in refused.stderr
    assert subprocess.run(["git", "-C", str(other / "repo.git"), "rev-parse", "main"],
                          capture_output=True).returncode != 0
    assert [(e["action"], e["decision"]) for e in audit_lines(log)] == [("push", "allowed"), ("push", "denied")]


def test_interactive_shell_is_recorded(sec, home: Home, server) -> None:
    grant(sec, home, server, "operator")
    proc = subprocess.run([*ssh_argv(home, server, "-tt")], input=b"echo rec-$((6*7))\nexit 3\n",
                          capture_output=True, env=home.env, timeout=30)
    assert proc.returncode == 3 and b"rec-42" in proc.stdout
    [entry] = audit_lines(server.audit_log)
    assert entry["action"] == "shell" and entry["recording_sha256"]
    replay = sec("replay", entry["recording"], "--speed", "100")
    assert replay.code == 0 and "rec-42" in replay.out
