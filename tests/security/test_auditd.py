"""The audit writer (`bridge audit serve`): peer credentials recorded, bad records refused, never wedged."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from bridge import frames
from bridge.security import audit, auditd
from tests.accounts import Account
from tests.conftest import Result
from tests.security.conftest import audit_lines
from tests.security.writer import AuditWriter, audit_writer, stop_writer  # noqa: F401 - fixture

def connect(writer: AuditWriter) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(20)
    sock.connect(str(writer.socket))
    return sock


def ask(sock: socket.socket, kind: bytes, payload: bytes) -> tuple[bytes, bytes]:
    """One frame out, one frame back, in the writer's own framing (bridge.frames)."""
    peer = frames.Peer(sock)
    peer.send(kind, payload)
    return peer.recv()


def record(**fields: object) -> bytes:
    return json.dumps({"action": "exec", "decision": "allowed", **fields}).encode()


AS_ACCOUNT = """
import sys
from bridge.security import audit, auditd
from bridge.ssh import keeper
print(audit.SocketWriter(sys.argv[1]).write(
    audit.build_entry(action="exec", command="claims to be root", user="root")))
"""


def test_peer_credentials_are_the_kernel_s_not_the_record_s(audit_writer: AuditWriter, system_bridge: Path,
                                                            sudo_account: Account) -> None:
    python = str(system_bridge.parent / "python3")

    def as_account() -> None:
        os.setgroups([])
        os.setgid(sudo_account.gid)
        os.setuid(sudo_account.uid)

    run = subprocess.run([python, "-c", AS_ACCOUNT, str(audit_writer.socket)], capture_output=True,
                         preexec_fn=as_account, cwd="/", timeout=60)
    assert run.returncode == 0, run.stderr
    with connect(audit_writer) as sock:
        for forged in ("peer_uid", "peer_user", "peer_pid", "hash", "prev", "time", "host", "ended"):
            kind, why = ask(sock, b"W", record(**{forged: 0}))
            assert (kind, b"set by the writer" in why) == (b"E", True), (forged, why)
    [entry] = audit_lines(audit_writer.log)
    assert entry["user"] == "root" and entry["command"] == "claims to be root"
    assert (entry["peer_uid"], entry["peer_gid"], entry["peer_user"]) == (
        sudo_account.uid, sudo_account.gid, sudo_account.name)
    assert entry["peer_pid"] > 1 and run.stdout.decode().strip() == entry["hash"]
    assert audit.verify(audit_writer.log, audit_writer.key.read_bytes()).ok


def test_malformed_and_oversized_records_are_refused_and_the_writer_serves_on(audit_writer: AuditWriter) -> None:
    bad = [b"not json", b"[1, 2]", record(nested={"a": 1}), record(**{"Bad-Name": 1}),
           json.dumps({"decision": "allowed"}).encode(), record(**{f"f{i}": i for i in range(60)})]
    with connect(audit_writer) as sock:
        for payload in bad:
            kind, why = ask(sock, b"W", payload)
            assert kind == b"E" and why.startswith(b"bad record"), (payload, why)
        assert ask(sock, b"Q", b"")[0] == b"E"
        ok, head = ask(sock, b"W", record(command="after the bad ones"))  # the same connection still works
        assert ok == b"O" and len(head) == 64
    silent = connect(audit_writer)
    silent.sendall(frames.HEADER.pack(b"W", 100) + b"{")  # half a frame, then nothing: it must not hold anyone up
    with connect(audit_writer) as big:
        # only the header goes out: the writer must answer from the length alone (were the body sent
        # too, the writer closing on it mid-send would make this client's write fail, not the test)
        big.sendall(frames.HEADER.pack(b"W", audit.MAX_RECORD + 1))
        kind, why = frames.Peer(big).recv()
        assert kind == b"E" and b"too large" in why
        assert big.recv(1) == b""  # closed: the rest of that frame is never read
    with connect(audit_writer) as other:
        assert ask(other, b"W", record(command="another client"))[0] == b"O"
    silent.close()
    assert audit_writer.alive()
    assert [e["command"] for e in audit_lines(audit_writer.log)] == ["after the bad ones", "another client"]
    st = audit_writer.log.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)


def test_one_uid_cannot_take_every_connection(audit_writer: AuditWriter) -> None:
    held = []
    for _ in range(auditd.PER_UID):
        held.append(connect(audit_writer))
        assert ask(held[-1], b"H", b"")[0] == b"O"  # each one served, so each one counted
    with connect(audit_writer) as extra:
        kind, why = frames.Peer(extra).recv()  # refused at once, before it asks anything
        assert kind == b"E" and b"connections open from uid 0" in why
    held.pop().close()
    answer = b"E"
    while answer != b"O":  # the writer counts the closed one out on its own thread
        with connect(audit_writer) as again:
            try:
                answer = ask(again, b"W", record(command="served again"))[0]
            except OSError:
                answer = b"E"  # refused and closed before our request went out
    for sock in held:
        sock.close()
    assert audit_writer.alive() and [e["command"] for e in audit_lines(audit_writer.log)] == ["served again"]


def test_the_writer_refuses_a_log_others_may_write(sec: Callable[..., Result], tmp_path: Path) -> None:
    folder = tmp_path / "log"
    folder.mkdir()
    folder.chmod(0o777)
    result = sec("audit", "serve", "--socket", str(tmp_path / "run/a.sock"), "--log", str(folder / "a.jsonl"))
    assert result.code == 1 and f"{folder} may be changed by an account other than the writer's" in result.err
    assert not (tmp_path / "run/a.sock").exists()


def test_install_prints_a_hardened_unit(sec: Callable[..., Result]) -> None:
    unit = sec("audit", "install", "--print", "--bridge", "/usr/local/bin/bridge")
    assert unit.code == 0
    assert "ExecStart=/usr/local/bin/bridge audit serve --socket /run/bridge/audit.sock" in unit.out
    for option in ("NoNewPrivileges=yes", "ProtectSystem=strict", "RestrictAddressFamilies=AF_UNIX",
                   "PrivateNetwork=yes", "CapabilityBoundingSet=\n"):
        assert option in unit.out


def test_a_begun_record_is_written_once_whatever_happens_to_its_sender(audit_writer: AuditWriter) -> None:
    with connect(audit_writer) as finished:
        assert ask(finished, b"B", record(command="finished", exit_code=None)) == (b"O", b"")
        kind, head = ask(finished, b"F", record(command="finished", exit_code=3))
    with connect(audit_writer) as lost:
        assert ask(lost, b"B", record(command="its guard was killed"))[0] == b"O"
    stopped = connect(audit_writer)
    assert ask(stopped, b"B", record(command="running when the writer stopped"))[0] == b"O"
    while len(audit_lines(audit_writer.log)) < 2:  # the lost one is written once the writer sees the hang-up
        time.sleep(0.05)
    stop_writer(audit_writer)
    stopped.close()
    entries = audit_lines(audit_writer.log)
    assert [(e["command"], e.get("exit_code"), e.get("ended")) for e in entries] == [
        ("finished", 3, None), ("its guard was killed", None, "guard-lost"),
        ("running when the writer stopped", None, "writer-stopped")]
    assert entries[0]["hash"] == head.decode()
    assert audit.verify(audit_writer.log, audit_writer.key.read_bytes()).ok
