"""Faults with real sshd and git: a cut connection, racing pushes, failed installs, non-ff, a full disk, nasty names."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Home
from tests.sshd import SSHServer
from tests.sync.test_pull import server_commit
from tests.sync.test_push import Root, commit, git, server_root, setup_workspace, ssh_ws  # noqa: F401 - fixtures


def descendants(pid: int) -> list[int]:
    """PIDs below `pid` (the sshd we started): its per-connection sessions and what they run."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cut(sshd: SSHServer) -> None:
    """Pull the plug: kill our sshd and every session it forked, mid-transfer."""
    below = descendants(sshd.pid)
    sshd.stop()
    for pid in below:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def receiving(sshd: SSHServer) -> bool:
    """True while the server is taking in a pack (unpack-objects or index-pack under our sshd)."""
    for pid in descendants(sshd.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"unpack-objects" in cmdline or b"index-pack" in cmdline:
            return True
    return False


def wait_for(predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def start_bridge(home: Home, cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bridge", *args], cwd=cwd, env=home.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_network_cut_mid_push_leaves_server_intact_and_the_next_push_works(
        bridge, home: Home, ssh_ws: Path, sshd: SSHServer, server_root: Root) -> None:
    assert bridge("push", cwd=ssh_ws).code == 0
    before, ref_before = server_root.current_name(), server_root.ref()
    (ssh_ws / "big.bin").write_bytes(os.urandom(80 * 1024 * 1024))
    commit(ssh_ws, {})
    proc = start_bridge(home, ssh_ws, "push")
    wait_for(lambda: receiving(sshd) or proc.poll() is not None, timeout=120)
    assert proc.poll() is None, "the push finished before the cut"
    cut(sshd)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 255, (out, err)
    assert "connection" in err.lower() and "Traceback" not in err
    assert server_root.current_name() == before and server_root.ref() == ref_before
    subprocess.run(["git", "--git-dir", str(server_root.path / "repo.git"), "fsck", "--no-dangling"], check=True,
                   capture_output=True)
    sshd.start()
    again = bridge("push", cwd=ssh_ws)
    assert again.code == 0, again
    assert server_root.ref() == git(ssh_ws, "rev-parse", "HEAD") and (server_root.current / "big.bin").is_file()


def clone_workspace(ssh_ws: Path, tmp_path: Path) -> Path:
    other = tmp_path / "other ws"
    subprocess.run(["git", "clone", "-q", str(ssh_ws), str(other)], check=True)
    return other


def test_two_pushes_at_once_to_one_branch_one_wins_one_is_refused_cleanly(
        bridge, home: Home, ssh_ws: Path, server_root: Root, tmp_path: Path) -> None:
    assert bridge("push", cwd=ssh_ws).code == 0
    other = clone_workspace(ssh_ws, tmp_path)
    mine, theirs = commit(ssh_ws, {"mine.txt": "1\n"}), commit(other, {"theirs.txt": "2\n"})
    procs = [start_bridge(home, ws, "push") for ws in (ssh_ws, other)]
    outcomes = [(p.wait(120), p.stdout.read(), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _, _ in outcomes)
    assert codes in ([0, 0], [0, 1]), outcomes
    for code, _, err in outcomes:
        assert code == 0 or "push refused" in err
    assert server_root.ref() in (mine, theirs)
    assert server_root.current_name().endswith(server_root.ref()[:12])
    assert not [n for n in os.listdir(server_root.path / "releases") if n.startswith(".")]


def test_two_pushes_at_once_to_different_branches_both_deploy_in_turn(
        bridge, home: Home, ssh_ws: Path, server_root: Root, tmp_path: Path) -> None:
    other = clone_workspace(ssh_ws, tmp_path)
    git(other, "switch", "-q", "-c", "feature")
    commit(ssh_ws, {"mine.txt": "1\n"})
    commit(other, {"theirs.txt": "2\n"})
    procs = [start_bridge(home, ws, "push") for ws in (ssh_ws, other)]
    assert [p.wait(120) for p in procs] == [0, 0], [p.stderr.read() for p in procs]
    log = server_root.log()
    assert [e["result"] for e in log] == ["ok", "ok"]
    assert {e["ref"] for e in log} == {"refs/heads/main", "refs/heads/feature"}
    assert log[0]["start"] < log[1]["start"] and server_root.current_name() == log[1]["release"]


def test_failed_dependency_install_leaves_current_unchanged(bridge, ssh_ws: Path, server_root: Root) -> None:
    assert bridge("push", cwd=ssh_ws).code == 0
    before = server_root.current_name()
    commit(ssh_ws, {"requirements.txt": "--no-index\nno-such-package-anywhere==9.9\n"})
    result = bridge("push", cwd=ssh_ws)
    assert result.code == 1, result
    assert "FAIL deps:python" in result.out and "no-such-package-anywhere" in result.out
    assert "deploy failed at step 'deps:python'" in result.err
    assert server_root.current_name() == before
    assert server_root.log()[-1]["result"] == "failed"


def test_non_fast_forward_is_refused_and_force_says_what_it_overwrites(
        bridge, ssh_ws: Path, server_root: Root, tmp_path: Path) -> None:
    assert bridge("push", cwd=ssh_ws).code == 0
    server_commit(server_root, tmp_path, {"hotfix.txt": "server\n"})
    ours = commit(ssh_ws, {"local.txt": "local\n"}, "local work")
    refused = bridge("push", cwd=ssh_ws)
    assert refused.code == 1, refused
    assert "push refused" in refused.err and "bridge pull" in refused.err and "--force" in refused.err
    forced = bridge("push", "--force", cwd=ssh_ws)
    assert forced.code == 0, forced
    assert "--force overwrote 1 commit(s)" in forced.out and "server change" in forced.out
    assert server_root.ref() == ours and server_root.current_name().endswith(ours[:12])


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 2 MiB tmpfs as the server's deploy root (we are root); unmounted afterwards."""
    mount = tmp_path / "small disk; 'x'"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_on_the_server_is_a_clear_error_and_nothing_switches(
        bridge, workspace: Path, sshd: SSHServer, small_disk: Path) -> None:
    root = Root(small_disk / "app")
    assert setup_workspace(bridge, workspace, sshd.url(str(root.path))).code == 0
    assert bridge("push", cwd=workspace).code == 0
    before, ref = root.current_name(), root.ref()
    (workspace / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    commit(workspace, {})
    result = bridge("push", cwd=workspace)
    assert result.code == 1, result
    assert "disk is full" in result.err or "disk full" in result.err + result.out
    assert root.current_name() == before and root.ref() == ref
    assert not [n for n in os.listdir(root.path / "releases") if n.startswith(".")]


def test_nasty_workspace_folder_and_deploy_command_args_do_not_inject(
        bridge, tmp_path: Path, sshd: SSHServer) -> None:
    folder = tmp_path / "my ws; touch INJECTED 'q' \"d\" $(touch INJECTED2)"
    folder.mkdir()
    root = Root(tmp_path / "root $(touch INJECTED3); `touch INJECTED4`")
    assert setup_workspace(bridge, folder, sshd.url(str(root.path))).code == 0
    result = bridge("push", cwd=folder)
    assert result.code == 0, result
    assert (root.current / "README").is_file()
    assert not list(tmp_path.rglob("INJECTED*")) and not list(Path.home().glob("INJECTED*"))


def test_the_git_relay_runs_only_git_services_on_the_expected_repo(home: Home, sshd: SSHServer,
                                                                     tmp_path: Path) -> None:
    """A git (or anything) using our relay cannot reach another repo or run another command on the server."""
    from bridge.config import Remote
    from bridge.runners import SSHRunner
    from bridge.ssh.connection import Connection
    from bridge.ssh.settings import SSHSettings
    from bridge.sync.gitlink import GitLink

    repo = tmp_path / "srv; 'x'" / "repo.git"
    other = tmp_path / "other.git"
    for bare in (repo, other):
        subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    settings = SSHSettings(host="127.0.0.1", hostname="127.0.0.1", port=sshd.port, user="root",
                           identities=(home.key,), explicit_identity=True)
    runner = SSHRunner(Remote(name="prod", url=sshd.url("/")), "/", Connection(settings))
    with runner, GitLink(runner, str(repo)) as link:
        socket_path = link.env()["GIT_SSH_COMMAND"].split()[-1]
        assert os.stat(socket_path).st_mode & 0o777 == 0o600
        assert os.stat(os.path.dirname(socket_path)).st_mode & 0o777 == 0o700
        env = {**os.environ, **link.env()}
        ok = subprocess.run(["git", "ls-remote", link.url], env=env, capture_output=True, text=True)
        assert ok.returncode == 0, ok.stderr
        for url in (f"bridge:{other}", f"bridge:{repo}'; touch /tmp/pwned-bridge-relay; '"):
            refused = subprocess.run(["git", "ls-remote", url], env=env, capture_output=True, text=True)
            assert refused.returncode != 0 and "refused git command" in refused.stderr
        relay = link.env()["GIT_SSH_COMMAND"]
        shell = subprocess.run(["sh", "-c", relay + " bridge 'id; touch /tmp/pwned-bridge-relay'"],
                               capture_output=True, text=True)
        assert shell.returncode == 255 and "refused git command" in shell.stderr
        assert len(link.state.errors) == 3
    assert not Path("/tmp/pwned-bridge-relay").exists()
