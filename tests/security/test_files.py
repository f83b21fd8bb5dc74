"""sftp and scp through the guard: the `files` permission, confined to the workspaces, every file named in the audit."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.security import files
from tests.accounts import Account
from tests.conftest import Home, Result
from tests.security.conftest import audit_lines
from tests.security.guarded import Guarded, guarded_server
from tests.security.writer import AuditWriter, audit_writer  # noqa: F401 - fixture

POLICY = """roles:
  filer: {{permissions: [status, pull, exec, files], workspaces: ['{ws}']}}
users: {{}}
"""


@pytest.fixture
def server(sshd_factory: Callable, home: Home, sudo_account: Account, audit_writer: AuditWriter) -> Guarded:
    ws = sudo_account.home / "app"
    ws.mkdir()
    os.chown(ws, sudo_account.uid, sudo_account.gid)
    return guarded_server(sshd_factory, home, sudo_account, audit_writer, POLICY.format(ws=ws))


def sftp(g: Guarded, batch: str, cwd: Path) -> subprocess.CompletedProcess:
    """OpenSSH's sftp client running `batch` (one command a line) as the guarded account."""
    argv = g.ssh_argv()
    argv[argv.index("-p")] = "-P"
    return subprocess.run(["sftp", "-b", "-", *argv[1:]], input=batch.encode(), capture_output=True,
                          env=g.home.env, cwd=cwd, timeout=60)


def file_ops(g: Guarded) -> list[tuple[str, str, str | None]]:
    return [(e["op"], e["path"], e.get("mode")) for e in audit_lines(g.writer.log) if e.get("op")]


@pytest.mark.parametrize("role, rule", [("viewer", "viewer.no-files"), ("operator", "operator.no-files")])
def test_sftp_is_refused_without_the_files_permission(server: Guarded, sec: Callable[..., Result], system_bridge: Path,
                                                      tmp_path: Path, role: str, rule: str) -> None:
    server.grant(sec, role, system_bridge)
    run = sftp(server, "ls\n", tmp_path)
    assert run.returncode != 0, run  # sshd drops a subsystem's stderr: the reason is in the audit only
    [entry] = audit_lines(server.writer.log)
    assert (entry["action"], entry["decision"], entry["rule"]) == ("files", "denied", rule)


def test_sftp_with_files_is_confined_and_every_file_is_audited(server: Guarded, sec: Callable[..., Result],
                                                               system_bridge: Path, tmp_path: Path) -> None:
    server.grant(sec, "filer", system_bridge)
    ws = server.account.home / "app"
    (tmp_path / "up.txt").write_text("uploaded\n")
    run = sftp(server, f"put up.txt {ws}/up.txt\nget {ws}/up.txt down.txt\nrename {ws}/up.txt {ws}/moved.txt\n"
                       f"rm {ws}/moved.txt\n", tmp_path)
    assert run.returncode == 0, run
    assert (tmp_path / "down.txt").read_text() == "uploaded\n" and list(ws.iterdir()) == []
    ops = file_ops(server)
    assert ("open", f"{ws}/up.txt", "write,create,truncate") in ops and ("open", f"{ws}/up.txt", "read") in ops
    assert ("rename", f"{ws}/up.txt", None) in ops and ("remove", f"{ws}/moved.txt", None) in ops
    renamed = [e for e in audit_lines(server.writer.log) if e.get("op") == "rename"]
    assert renamed[0]["target"] == f"{ws}/moved.txt"
    for outside in (f"get /etc/hostname {tmp_path}/hostname", f"put up.txt {server.account.home}/escaped.txt",
                    "put up.txt /tmp/escaped.txt"):
        assert sftp(server, outside + "\n", tmp_path).returncode != 0, outside
    assert not (tmp_path / "hostname").exists() and not (server.account.home / "escaped.txt").exists()
    listing = sftp(server, "ls /\n", tmp_path)
    assert sorted(listing.stdout.decode().split()[3:]) == ["/bin", "/dev", "/etc", "/home", "/lib", "/lib64", "/sbin",
                                                                 "/usr"]
    sessions = [e for e in audit_lines(server.writer.log) if e["action"] == "files" and "op" not in e]
    assert sessions and all(e["workspace"] == str(ws) and e["decision"] == "allowed" for e in sessions)


def test_scp_goes_through_sftp_and_is_audited(server: Guarded, sec: Callable[..., Result], system_bridge: Path,
                                             tmp_path: Path) -> None:
    server.grant(sec, "filer", system_bridge)
    ws = server.account.home / "app"
    (tmp_path / "a.bin").write_bytes(os.urandom(300_000))
    argv = server.ssh_argv()
    argv[argv.index("-p")] = "-P"
    dest = f"{argv[-1]}:{ws}/a.bin"
    up = subprocess.run(["scp", "-q", *argv[1:-1], str(tmp_path / "a.bin"), dest], capture_output=True,
                        env=server.home.env, timeout=60)
    assert up.returncode == 0, up
    assert (ws / "a.bin").read_bytes() == (tmp_path / "a.bin").read_bytes()
    assert ("open", f"{ws}/a.bin", "write,create") in file_ops(server)  # scp truncates after the copy
    server.grant(sec, "viewer", system_bridge)
    refused = subprocess.run(["scp", "-q", *argv[1:-1], dest, str(tmp_path / "b.bin")], capture_output=True,
                             env=server.home.env, timeout=60)
    assert refused.returncode != 0 and not (tmp_path / "b.bin").exists()


def test_admin_sftp_is_not_confined(server: Guarded, sec: Callable[..., Result], system_bridge: Path,
                                    tmp_path: Path) -> None:
    server.grant(sec, "admin", system_bridge)
    run = sftp(server, f"get /etc/hostname {tmp_path}/hostname\n", tmp_path)
    assert run.returncode == 0 and (tmp_path / "hostname").read_text() == Path("/etc/hostname").read_text()
    assert ("open", "/etc/hostname", "read") in file_ops(server)


def test_a_file_name_cannot_forge_an_audit_line() -> None:
    name = b'/w/a"\r\nremove name "/etc/passwd'
    packet = _packet(3, name + b"\x00\x00\x00\x1a" + b"\x00" * 4)
    assert files.describe(packet, "/w") == {"op": "open", "path": name.decode(), "mode": "write,create,truncate"}


def _packet(kind: int, body_after_name: bytes) -> bytes:
    """An sftp request: length, type, id 7, then a string whose bytes run up to the last 8 bytes."""
    name, rest = body_after_name[:-8], body_after_name[-8:]
    payload = bytes([kind]) + (7).to_bytes(4, "big") + len(name).to_bytes(4, "big") + name + rest
    return len(payload).to_bytes(4, "big") + payload
