"""The boundary is the kernel and the account: no_new_privs, run_as, an environment the client cannot set.

Every test logs in through a real sshd as a fresh account that sudoers grants NOPASSWD: ALL,
with its key granted by `bridge keys add` in a root-owned AuthorizedKeysFile.
"""
from __future__ import annotations

import os
import secrets
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.security.conftest import Guarded, audit_lines
from tests.sshd import SSHD, SSHServer, free_port, keygen, wait_port


def test_sudo_works_for_the_account_without_the_guard(guarded: Guarded) -> None:
    guarded.grant("operator")
    plain = guarded.unguarded_ssh("sudo -n id -u")
    assert plain.returncode == 0 and plain.stdout == b"0\n", "the account's sudo rule must work, or no test can fail"


def test_operator_typing_sudo_in_a_shell_meets_the_kernel(guarded: Guarded) -> None:
    guarded.grant("operator")
    proc = guarded.ssh(None, "-tt", input=b"sudo -n id -u; echo rc=$?\necho after-$((1+1))\nexit 0\n")
    out = proc.stdout.replace(b"\r", b"")
    assert b'The "no new privileges" flag is set' in out and b"rc=1" in out, out
    assert b"after-2" in out and proc.returncode == 0, "the session goes on after the refusal"
    assert b"\n0\n" not in out
    [entry] = guarded.entries()
    assert (entry["action"], entry["decision"], entry["exit_code"]) == ("shell", "allowed", 0)


def test_no_new_privs_is_set_for_commands_and_not_for_admin(guarded: Guarded) -> None:
    guarded.grant("operator")
    assert b"NoNewPrivs:\t1" in guarded.ssh("grep NoNewPrivs /proc/self/status").stdout
    guarded.grant("admin")
    assert b"NoNewPrivs:\t0" in guarded.ssh("grep NoNewPrivs /proc/self/status").stdout


def _root_policy(guarded: Guarded, run_as: str | None) -> Path:
    policy = guarded.root / "policy.yaml"
    entry = f"{{role: operator, run_as: {run_as}}}" if run_as else "operator"
    policy.write_text(f"users:\n  ops: {entry}\n")
    return policy


def test_a_root_login_runs_a_no_sudo_role_as_its_run_as_account(guarded: Guarded) -> None:
    policy = _root_policy(guarded, guarded.account.name)
    added = guarded.keys_add("operator", "--policy", str(policy), user="ops", file=guarded.server.authorized_keys)
    assert added.code == 0, added
    proc = guarded.ssh("id -un; id -G; echo $HOME $USER; pwd; grep NoNewPrivs /proc/self/status", login="root")
    lines = proc.stdout.decode().splitlines()
    account = guarded.account
    assert lines == [account.name, subprocess.run(["id", "-G", account.name], capture_output=True, text=True).stdout.strip(),
                     f"{account.home} {account.name}", str(account.home), "NoNewPrivs:\t1"], proc
    [entry] = guarded.entries()
    assert entry["user"] == "ops" and entry["decision"] == "allowed"


def test_a_root_login_without_run_as_is_refused_at_keys_add_and_at_login(guarded: Guarded) -> None:
    refused = guarded.keys_add("operator", user="ops", file=guarded.server.authorized_keys)
    assert refused.code == 2 and "would run as root" in refused.err and "hint: add `run_as" in refused.err
    assert "guard --as ops" not in guarded.server.authorized_keys.read_text()
    policy = _root_policy(guarded, guarded.account.name)
    assert guarded.keys_add("operator", "--policy", str(policy), user="ops", file=guarded.server.authorized_keys).code == 0
    _root_policy(guarded, None)  # the policy loses run_as after the key was granted
    proc = guarded.ssh("id -u", login="root")
    assert proc.returncode == 126 and proc.stdout == b""
    assert proc.stderr.count(b"\n") == 1 and b"rule operator.no-run-as" in proc.stderr
    [entry] = guarded.entries()
    assert (entry["decision"], entry["rule"]) == ("denied", "operator.no-run-as")


def test_a_viewer_cannot_become_admin_through_the_session_environment(guarded: Guarded) -> None:
    evil = guarded.root / "evil.yaml"
    evil.write_text(f"users:\n  {guarded.account.name}: admin\n")
    other_log = guarded.root / "log" / "elsewhere.jsonl"
    guarded.grant("viewer")
    proc = guarded.ssh("id -u", "-o", f"SetEnv=BRIDGE_POLICY={evil} BRIDGE_AUDIT_LOG={other_log}")
    assert proc.returncode == 126 and b"rule viewer.no-exec" in proc.stderr
    assert not other_log.exists() and [e["rule"] for e in guarded.entries()] == ["viewer.no-exec"]


def _hooks(guarded: Guarded) -> tuple[Path, Path, dict[str, str]]:
    """A marker folder, a hook script that writes into it, and client variables that would run it."""
    marks = guarded.root / "marks"
    marks.mkdir(mode=0o777, exist_ok=True)
    marks.chmod(0o777)
    hook = guarded.root / "hook.sh"
    hook.write_text(f'#!/bin/sh\necho "hook $*" >> {marks}/hit\nexit 0\n')
    hook.chmod(0o755)
    py = guarded.root / "py"
    py.mkdir(exist_ok=True)
    for name in ("sitecustomize", "usercustomize", "startup"):
        (py / f"{name}.py").write_text(f"open({str(marks / 'hit')!r}, 'a').write('python {name}\\n')\n")
    variables = {
        "PYTHONPATH": str(py), "PYTHONSTARTUP": str(py / "startup.py"), "PYTHONINSPECT": "1",
        "PYTHONUSERBASE": str(py), "BASH_ENV": str(hook), "ENV": str(hook),
        "GIT_CONFIG_COUNT": "2", "GIT_CONFIG_KEY_0": "core.fsmonitor", "GIT_CONFIG_VALUE_0": str(hook),
        "GIT_CONFIG_KEY_1": "alias.st", "GIT_CONFIG_VALUE_1": f"!{hook}", "LD_LIBRARY_PATH": str(py),
    }
    return marks, hook, variables


def test_client_variables_run_no_hook_in_the_guard_or_the_command(guarded: Guarded) -> None:
    marks, _hook, variables = _hooks(guarded)
    setenv = ["-o", "SetEnv=" + " ".join(f"{k}={v}" for k, v in variables.items())]
    command = ("git init -q ~/r && touch ~/r/f && git -C ~/r status >/dev/null && git -C ~/r st; "
               "bash -c true; python3 -c pass; env | grep -c -E '^(PYTHON|GIT_|BASH_ENV|LD_)' || true")
    plain = guarded.unguarded_ssh(command, *setenv)
    hit = (marks / "hit").read_text() if (marks / "hit").exists() else ""
    assert "hook" in hit and "python sitecustomize" in hit, ("without the guard the hooks run", plain, hit)
    (marks / "hit").unlink()
    guarded.grant("operator")
    proc = guarded.ssh(command, *setenv)
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == b"0", proc
    assert not (marks / "hit").exists(), (marks / "hit").read_text()
    assert [e["decision"] for e in guarded.entries()] == ["allowed"], "the guard ran and audited as usual"


def test_a_pty_session_whose_client_is_killed_leaves_exactly_one_audit_line(guarded: Guarded) -> None:
    guarded.grant("operator")
    _kill_client_mid_session(guarded, "-tt", b"echo started-$((2+3))\n", b"started-5")
    entries = _wait_for_entries(guarded.log)
    assert [(e["action"], e["decision"]) for e in entries] == [("shell", "allowed")]


def _kill_client_mid_session(guarded: Guarded, option: str, line: bytes, marker: bytes) -> None:
    """Open a shell (`ssh -tt` or `-T`), type `line`, and `kill -9` the client once `marker` shows."""
    proc = subprocess.Popen(guarded.ssh_argv(option), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=guarded.home.env)
    try:
        proc.stdin.write(line)
        proc.stdin.flush()
        assert marker in _read_until(proc.stdout.fileno(), marker)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def _read_until(fd: int, marker: bytes, limit: float = 30) -> bytes:
    """Output of `fd` until `marker` shows (or `limit` seconds pass: the assertion then fails)."""
    data, deadline = b"", time.monotonic() + limit
    while marker not in data and time.monotonic() < deadline:
        ready, _w, _x = select.select([fd], [], [], 1)
        chunk = os.read(fd, 4096) if ready else b""
        if ready and not chunk:
            break
        data += chunk
    return data


def _wait_for_entries(log: Path, limit: float = 30) -> list[dict]:
    """The log's entries once a line arrived (the guard writes it after its child ended), then a moment more."""
    deadline = time.monotonic() + limit
    while not audit_lines(log) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # a second line, if the guard wrongly wrote one, would show by now
    return audit_lines(log)


def test_an_ssh_dash_t_shell_leaves_one_audit_line(guarded: Guarded) -> None:
    guarded.grant("operator")
    proc = guarded.ssh(None, "-T", input=b"echo plain-$((1+1))\nexit 4\n")
    assert proc.returncode == 4 and b"plain-2" in proc.stdout, proc
    [entry] = guarded.entries()
    assert (entry["action"], entry["decision"], entry["exit_code"]) == ("shell", "allowed", 4)


def test_an_ssh_dash_t_shell_whose_client_is_killed_mid_output_leaves_one_line(guarded: Guarded) -> None:
    guarded.grant("operator")
    _kill_client_mid_session(guarded, "-T", b"while :; do echo tick-$((3*3)); sleep 0.05; done\n", b"tick-9")
    entries = _wait_for_entries(guarded.log)
    assert [(e["action"], e["decision"]) for e in entries] == [("shell", "allowed")]


@pytest.fixture
def pam_guarded(guarded: Guarded, tmp_path: Path) -> Iterator[Guarded]:
    """The same account and keys behind a second sshd whose PAM session stack runs `bridge keys pam-session`.

    PAM names the service after sshd's file name, so sshd runs through a link of its own name
    and the test's service file in /etc/pam.d touches no other sshd.
    """
    name = f"bridge-test-sshd-{secrets.token_hex(3)}"
    link = guarded.root / name
    link.symlink_to(SSHD)
    service = Path("/etc/pam.d") / name
    python = guarded.bridge.parent / "python3"
    service.write_text("account required pam_permit.so\n"
                       f"session optional pam_exec.so {python} -I -S {guarded.bridge} keys pam-session "
                       f"--file {guarded.keys}/%u\n")
    folder = tmp_path / "pam-sshd"
    folder.mkdir()
    server = SSHServer(folder, free_port(), guarded.home.key, ["ExposeAuthInfo yes", *guarded.server.extra_config],
                       binary=str(link), use_pam=True)
    keygen(server.host_key)
    server.authorized_keys.write_text("")
    try:
        server.start()
        guarded.home.trust(server)
        yield replace(guarded, server=server)
    finally:
        server.stop()
        service.unlink()


def test_an_admin_port_forward_without_a_session_leaves_an_audit_line(pam_guarded: Guarded) -> None:
    pam_guarded.grant("operator")
    assert pam_guarded.ssh("true").returncode == 0, "a session: the guard's own line, no connect line"
    pam_guarded.grant("admin")
    port = free_port()
    proc = subprocess.Popen(pam_guarded.ssh_argv("-N", "-L", f"{port}:127.0.0.1:{pam_guarded.server.port}"),
                            env=pam_guarded.home.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            assert s.recv(8).startswith(b"SSH-2.0"), "the forward works"
    finally:
        proc.terminate()
        proc.wait()
    entries = pam_guarded.entries()
    assert [(e["action"], e["decision"], e["rule"]) for e in entries] == [
        ("exec", "allowed", "operator.exec"), ("connect", "allowed", "admin.forward")]
    assert entries[1]["user"] == pam_guarded.account.name and entries[1]["source"] == "127.0.0.1"
