"""End to end through a real sshd: a sudo-capable account logs in with keys `bridge keys add` granted."""
from __future__ import annotations

import shlex
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.security import audit
from tests.conftest import free_port, wait_port
from tests.security.conftest import Guarded, owned_pair

DENIED = ["sudo id", "ls; sudo id", "echo $(sudo id)", "echo `sudo id`", "env sudo id", "sh -c 'sudo id'",
          "/usr/bin/sudo id", "true | sudo id", "(sudo id)", "nice sudo id", "su -c id"]


def test_operator_key_runs_ls_but_not_sudo(guarded: Guarded) -> None:
    guarded.grant("operator")
    ok = guarded.ssh("ls /")
    assert ok.returncode == 0 and b"etc" in ok.stdout.split()
    for cmdline in DENIED:
        refused = guarded.ssh(cmdline)
        assert refused.returncode == 126, (cmdline, refused)
        assert refused.stdout == b"" and b"rule operator.no-sudo" in refused.stderr
    entries = guarded.entries()
    assert [e["decision"] for e in entries] == ["allowed"] + ["denied"] * len(DENIED)
    assert [e["command"] for e in entries[1:]] == DENIED
    assert audit.verify(guarded.log).ok


def test_operator_cannot_forward_ports(guarded: Guarded) -> None:
    guarded.grant("operator")
    port = guarded.server.port
    remote = subprocess.run([*guarded.ssh_argv("-N", "-o", "ExitOnForwardFailure=yes",
                                               "-R", f"{free_port()}:127.0.0.1:{port}")],
                            capture_output=True, env=guarded.home.env, timeout=60)
    assert remote.returncode == 255 and b"forwarding failed" in remote.stderr
    local_port = free_port()
    proc = subprocess.Popen([*guarded.ssh_argv("-N", "-L", f"{local_port}:127.0.0.1:{port}")],
                            env=guarded.home.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(local_port)
        assert _banner(local_port) == b"", "a forwarded connection reached sshd through the tunnel"
    finally:
        _stop(proc)
    guarded.grant("admin")  # the same probe succeeds once the role may forward
    proc = subprocess.Popen([*guarded.ssh_argv("-N", "-L", f"{local_port}:127.0.0.1:{port}")],
                            env=guarded.home.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


def test_viewer_cannot_exec_admin_can(guarded: Guarded) -> None:
    guarded.grant("viewer")
    viewer = guarded.ssh("id -u")
    assert viewer.returncode == 126 and b"rule viewer.no-exec" in viewer.stderr
    guarded.grant("admin")
    admin = guarded.ssh("sudo -n id -u")
    assert admin.returncode == 0 and admin.stdout == b"0\n", "admin holds sudo: no no_new_privs"
    assert [(e["action"], e["decision"]) for e in guarded.entries()] == [("exec", "denied"), ("exec", "allowed")]


@pytest.fixture
def repos(guarded: Guarded) -> Iterator[tuple[Path, Path]]:
    """Two bare repos the account owns, in a folder it can reach."""

    def bare(folder: Path) -> None:
        subprocess.run(["git", "init", "-q", "--bare", str(folder / "repo.git")], check=True)

    with owned_pair(guarded, "bridge-srv-", bare) as pair:
        yield pair


def _push(guarded: Guarded, work: Path, repo: Path) -> subprocess.CompletedProcess:
    env = {**guarded.home.env, "GIT_SSH_COMMAND": shlex.join(guarded.ssh_argv()[:-1])}
    url = f"ssh://{guarded.account.name}@{guarded.server.host}:{guarded.server.port}{repo}"
    return subprocess.run(["git", "-C", str(work), "push", url, "HEAD:refs/heads/main"], capture_output=True,
                          env=env, timeout=60)


@pytest.fixture
def work(tmp_path: Path, guarded: Guarded) -> Path:
    """A local repo with one commit to push."""
    folder = tmp_path / "work"
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    (folder / "a.txt").write_text("a\n")
    subprocess.run(["git", "-C", str(folder), "add", "a.txt"], check=True)
    subprocess.run(["git", "-C", str(folder), "commit", "-qm", "a"], check=True, env=guarded.home.env)
    return folder


def test_git_push_only_into_the_key_s_workspaces(guarded: Guarded, repos, work: Path) -> None:
    mine, other = repos
    guarded.grant("operator")
    unscoped = _push(guarded, work, mine / "repo.git")
    assert unscoped.returncode != 0 and b"no workspace is granted to this key" in unscoped.stderr
    guarded.grant("operator", "--workspace", str(mine))
    ok = _push(guarded, work, mine / "repo.git")
    assert ok.returncode == 0, ok.stderr
    refused = _push(guarded, work, other / "repo.git")
    assert refused.returncode != 0 and b"rule operator.workspaces" in refused.stderr
    assert subprocess.run(["git", "-C", str(other / "repo.git"), "rev-parse", "main"],
                          capture_output=True).returncode != 0
    pull = guarded.ssh(f"git-upload-pack '{other}/repo.git'")
    assert pull.returncode == 126 and b"outside the workspaces" in pull.stderr
    assert [(e["action"], e["decision"]) for e in guarded.entries()] == [
        ("push", "denied"), ("push", "allowed"), ("push", "denied"), ("pull", "denied")]


def test_interactive_shell_is_recorded(guarded: Guarded, bridge) -> None:
    guarded.grant("operator")
    proc = guarded.ssh(None, "-tt", input=b"echo rec-$((6*7))\nexit 3\n")
    assert proc.returncode == 3 and b"rec-42" in proc.stdout
    [entry] = guarded.entries()
    assert entry["action"] == "shell" and entry["recording_sha256"]
    replay = bridge("replay", entry["recording"], "--speed", "100")
    assert replay.code == 0 and "rec-42" in replay.out
