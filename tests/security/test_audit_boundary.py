"""The audit trail is out of the operator's reach: through a real sshd, as a non-root account that
sudoers grants NOPASSWD: ALL, with the root-owned writer keeping the log."""
from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.security import audit
from tests.accounts import Account
from tests.conftest import Home, Result
from tests.security.conftest import audit_lines
from tests.security.guarded import Guarded, guarded_server
from tests.security.writer import AuditWriter, audit_writer, stop_writer  # noqa: F401 - fixture

REFUSED = ["sudo id", "echo $(sudo -n id)", "env sudo -n true"]


def tampering(log: Path, key: Path, sock: Path) -> list[str]:
    """Every way an account's own commands might edit, truncate, delete, replace or reorder the log."""
    q, k, s = shlex.quote(str(log)), shlex.quote(str(key)), shlex.quote(str(sock))
    return [
        f": > {q}", f"truncate -s 0 {q}", f"sed -i 1d {q}", f"echo forged >> {q}", f"rm -f {q}",
        f"mv {q} {q}.old", f"cp /dev/null {q}", f"ln -sf /dev/null {q}", f"chmod 666 {q}",
        f"python3 -c 'import sys; f = open(sys.argv[1], \"r+b\"); f.truncate(0)' {q}",
        f"tac {q} > ~/reordered && cat ~/reordered > {q}",
        f"rm -f {s}", f"cat {k}",
    ]


@pytest.fixture
def guarded(sshd_factory: Callable, home: Home, sudo_account: Account, audit_writer: AuditWriter,
            system_bridge: Path, sec: Callable[..., Result]) -> Guarded:
    g = guarded_server(sshd_factory, home, sudo_account, audit_writer)
    g.grant(sec, "operator", system_bridge)
    return g


def _wait_for(path: Path, run: Callable[[], subprocess.CompletedProcess]) -> None:
    """Poll (as the account, over ssh) until a background command's marker file exists."""
    deadline = time.monotonic() + 60
    while run().returncode != 0:
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def test_operator_cannot_touch_the_trail_from_exec_shell_or_background(guarded: Guarded,
                                                                       sec: Callable[..., Result]) -> None:
    writer, account = guarded.writer, guarded.account
    assert guarded.ssh("true").returncode == 0
    attempts = tampering(writer.log, writer.key, writer.socket)
    for command in attempts:
        run = guarded.ssh(command)
        assert run.returncode != 0, (command, run)
    assert guarded.ssh(f"cat {shlex.quote(str(writer.key))}").stdout == b""
    for command in REFUSED:
        assert guarded.ssh(command).returncode == 126, command
    marker = account.home / "bg-done"
    each = "; ".join(f"({a})" for a in attempts[:6])  # a failed redirection ends a shell: one subshell each
    background = f"(sleep 1; {each}; touch {marker}) >/dev/null 2>&1 &"
    assert guarded.ssh(background).returncode == 0
    _wait_for(marker, lambda: guarded.ssh(f"test -e {marker}"))
    marker2 = account.home / "bg2-done"
    in_shell = f"nohup sh -c {shlex.quote(f'sleep 1; {each}; touch {marker2}')} >/dev/null 2>&1 &"
    shell = subprocess.run(guarded.ssh_argv("-tt"), env=guarded.home.env, capture_output=True, timeout=60,
                           input=("\n".join([*attempts[:8], in_shell]) + "\nexit 0\n").encode())
    assert shell.returncode == 0 and shell.stdout.count(b"Permission denied") >= 6, shell
    _wait_for(marker2, lambda: guarded.ssh(f"test -e {marker2}"))
    assert writer.log.stat().st_size > 0 and writer.socket.is_socket() and writer.alive()
    entries = audit_lines(writer.log)
    commands = [e["command"] for e in entries]
    assert all(c in commands for c in attempts + REFUSED + [background])
    assert [e["command"] for e in entries if e["decision"] == "denied"] == REFUSED
    assert entries[0]["command"] == "true"  # nothing cut from the start
    assert [e["action"] for e in entries].count("shell") == 1
    assert {e["peer_user"] for e in entries} == {account.name}
    verify = sec("audit", "verify", str(writer.log), "--key", str(writer.key))
    assert verify.code == 0 and f"{len(entries)} lines intact" in verify.out, verify


def test_guard_refuses_when_the_writer_is_down(guarded: Guarded) -> None:
    stop_writer(guarded.writer)
    ran = guarded.account.home / "ran"
    down = guarded.ssh(f"touch {ran}")
    assert down.returncode == 126 and not ran.exists()
    [line] = down.stderr.decode().splitlines()
    assert "the audit writer is down" in line and "systemctl start bridge-audit" in line
    assert guarded.ssh("sudo id").returncode == 126  # a refusal too: nothing is decided unaudited


def test_a_cut_tail_is_found_with_the_head_the_client_recorded(guarded: Guarded, sec: Callable[..., Result],
                                                               bridge: Callable[..., Result], workspace: Path,
                                                               home: Home, system_bridge: Path) -> None:
    for n in range(3):
        guarded.ssh(f"echo {n}")
    guarded.grant(sec, "viewer", system_bridge)  # reading the head needs only the audit permission
    url = f"ssh://{guarded.account.name}@127.0.0.1:{guarded.server.port}/srv"
    (workspace / "bridge.yaml").write_text(f"workspace: w\nremotes:\n  prod: {{url: '{url}', "
                                           f"identity: '{home.key}'}}\ndefault: prod\n")
    head = bridge("audit", "head", "prod", cwd=workspace)
    assert head.code == 0, head
    name, value = head.out.split()
    log = guarded.writer.log
    assert name == "prod" and value == audit_lines(log)[-1]["hash"]  # the head request is itself the newest line
    recorded = [e for e in audit_lines(home.path / ".local/state/bridge/audit.jsonl") if e["action"] == "audit-head"]
    assert [(e["host"], e["server_head"]) for e in recorded] == [("prod", value)]
    assert guarded.ssh("echo after").returncode == 126  # the log grows past the head the client saw: still fine
    key = str(guarded.writer.key)
    ok = sec("audit", "verify", str(log), "--key", key, "--expect-head", "@prod")
    assert ok.code == 0 and f"head of line {len(audit_lines(log)) - 1} found" in ok.out, ok
    lines = log.read_bytes().splitlines(keepends=True)
    cut = log.parent / "cut.jsonl"
    cut.write_bytes(b"".join(lines[:-2]))  # an intact chain, two lines short
    assert sec("audit", "verify", str(cut), "--key", key).code == 0
    broken = sec("audit", "verify", str(cut), "--key", key, "--expect-head", "@prod")
    assert broken.code == 1 and "lines were cut from the end" in broken.err


def test_a_command_that_kills_its_guard_is_still_on_the_trail(guarded: Guarded) -> None:
    evil = guarded.account.home / "evil"
    killed = guarded.ssh(f"kill -9 $PPID; touch {evil}")  # the guard runs as the same account: it can die
    assert killed.returncode != 0 and evil.exists()
    deadline = time.monotonic() + 30
    while not audit_lines(guarded.writer.log):  # written once the writer sees the dead guard's hang-up
        assert time.monotonic() < deadline, "the killed guard's operation never reached the log"
        time.sleep(0.05)
    fds = guarded.ssh("ls -l /proc/$$/fd")  # the guard's open record is not handed to the command
    assert fds.returncode == 0 and b"socket:" not in fds.stdout, fds.stdout
    entries = audit_lines(guarded.writer.log)
    assert [(e["command"], e.get("ended")) for e in entries] == [(f"kill -9 $PPID; touch {evil}", "guard-lost"),
                                                                ("ls -l /proc/$$/fd", None)]
    assert entries[1]["exit_code"] == 0 and entries[0]["exit_code"] is None
