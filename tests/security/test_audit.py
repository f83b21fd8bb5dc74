"""The audit chain catches edits, deletions and reordering, and survives concurrent writers."""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.security import audit
from tests.conftest import BRIDGE as BRIDGE_CLI
from tests.conftest import REPO, Result
from tests.security.conftest import audit_lines


def fill(path: Path, count: int = 5, key: bytes | None = None) -> None:
    for i in range(count):
        audit.append(path, audit.build_entry(action="exec", command=f"echo {i}", exit_code=0, user="u"), key)


def test_chain_links_every_line(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    fill(log, 3)
    lines = audit_lines(log)
    assert lines[0]["prev"] == audit.GENESIS
    assert [line["prev"] for line in lines[1:]] == [line["hash"] for line in lines[:-1]]
    result = audit.verify(log)
    assert result.ok and result.lines == 3 and result.head == lines[-1]["hash"]
    assert set(lines[0]) >= {"time", "user", "source", "host", "workspace", "action", "command", "exit_code",
                             "duration", "decision", "rule", "prev", "hash"}


def test_cli_verify_intact_and_head(sec: Callable[..., Result], tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    fill(log, 4)
    ok = sec("audit", "verify", str(log))
    assert ok.code == 0 and "4 lines intact" in ok.out
    head = sec("audit", "verify", str(log), "--head")
    assert head.out.strip() == audit_lines(log)[-1]["hash"]
    assert sec("audit", "verify", str(log), "--expect-head", "0" * 64).code == 1


def _edit_byte(lines: list[bytes]) -> list[bytes]:
    lines[2] = lines[2].replace(b"echo 2", b"echo 9")
    return lines


def _delete(lines: list[bytes]) -> list[bytes]:
    return lines[:2] + lines[3:]


def _swap(lines: list[bytes]) -> list[bytes]:
    lines[2], lines[3] = lines[3], lines[2]
    return lines


def _break_json(lines: list[bytes]) -> list[bytes]:
    lines[2] = lines[2][:-1]
    return lines


@pytest.mark.parametrize("tamper, reason", [
    (_edit_byte, "edited"), (_delete, "deleted"), (_swap, "moved"), (_break_json, "not valid JSON"),
])
def test_tampering_fails_at_the_right_line(sec: Callable[..., Result], tmp_path: Path, tamper, reason) -> None:
    log = tmp_path / "audit.jsonl"
    fill(log, 6)
    log.write_bytes(b"\n".join(tamper(log.read_bytes().splitlines())) + b"\n")
    result = audit.verify(log)
    assert (result.ok, result.bad_line, result.lines) == (False, 3, 2)
    assert reason in result.reason
    cli = sec("audit", "verify", str(log))
    assert cli.code == 1 and f"{log}:3: broken" in cli.err and reason in cli.err


def test_edit_of_the_last_line_is_caught(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    fill(log, 3)
    log.write_bytes(log.read_bytes().replace(b"echo 2", b"echo X"))
    assert audit.verify(log).bad_line == 3


def test_hmac_key_is_needed_to_verify_and_to_forge(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    fill(log, 3, key=b"k1")
    assert audit.verify(log, b"k1").ok
    assert "BRIDGE_AUDIT_KEY" in audit.verify(log).reason
    assert audit.verify(log, b"wrong").bad_line == 1
    # An attacker without the key rewrites line 2 with a plain sha256: refused under the key.
    entries = audit_lines(log)
    forged = dict(entries[1], command="nothing to see", alg="sha256")
    forged["hash"] = audit.entry_hash(forged, None)
    lines = log.read_text().splitlines()
    lines[1] = json.dumps(forged)
    log.write_text("\n".join(lines) + "\n")
    assert audit.verify(log, b"k1").bad_line == 2


WRITER = """
import sys
from pathlib import Path
from bridge.security import audit
for i in range(25):
    audit.append(Path(sys.argv[1]), audit.build_entry(action="exec", command=f"w{sys.argv[2]}-{i}", user="u"))
"""


def test_twenty_concurrent_writers_keep_one_chain(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(log), str(n)], env={"PYTHONPATH": str(REPO)})
             for n in range(20)]
    assert [p.wait(120) for p in procs] == [0] * 20
    result = audit.verify(log)
    assert result.ok and result.lines == 500, result
    assert len({e["command"] for e in audit_lines(log)}) == 500


def test_record_never_raises_on_disk_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "is-a-dir"
    folder.mkdir()
    assert audit.record(action="exec", command="ls", exit_code=0, path=folder) is None
    assert "audit log" in capsys.readouterr().err


def test_record_writes_client_log_with_secrets_masked(home, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = audit.record(action="exec", command="bridge exec --env API_TOKEN=hunter22 -- deploy hunter22",
                         exit_code=0, duration=0.5, host="web1", workspace="myapp", user="dev",
                         secrets=("hunter22",))
    log = home.path / ".local/state/bridge/audit.jsonl"
    assert entry is not None and audit_lines(log)[-1]["hash"] == entry["hash"]
    assert "hunter22" not in log.read_text() and "API_TOKEN=***" in log.read_text()
    monkeypatch.setenv("BRIDGE_AUDIT_LOG", str(home.path / "elsewhere.jsonl"))
    audit.record(action="push", user="dev")
    assert audit_lines(home.path / "elsewhere.jsonl")[0]["action"] == "push"


def test_show_filters_and_json(sec: Callable[..., Result], tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    audit.append(log, audit.build_entry(action="exec", command="ls", user="alice", exit_code=0))
    audit.append(log, audit.build_entry(action="push", user="bob", decision="denied", rule="viewer.no-push"))
    out = sec("audit", "show", str(log), "--user", "bob", "--json")
    rows = [json.loads(line) for line in out.out.splitlines()]
    assert out.code == 0 and [r["action"] for r in rows] == ["push"]
    table = sec("audit", "show", str(log), "--since", "1h")
    assert "alice" in table.out and "viewer.no-push" in table.out
    assert sec("audit", "show", str(log), "--since", "2099-01-01", "--json").out == ""
    bad = sec("audit", "show", str(log), "--since", "yesterday-ish")
    assert bad.code == 1 and "--since" in bad.err


MEASURE = """
import resource, subprocess, sys
run = subprocess.run(sys.argv[1:], capture_output=True)
print(run.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, run.stderr.decode()[-300:])
"""


def _chain(path: Path, size: int) -> str:
    """Write a valid unkeyed chain of about `size` bytes; returns its head."""
    import hashlib

    prev, filler = audit.GENESIS, "x" * 4000
    with open(path, "wb") as f:
        for i in range(size // 4200):
            entry = {"action": "exec", "command": f"{filler} {i}", "decision": "allowed", "prev": prev, "alg": "sha256"}
            prev = entry["hash"] = hashlib.sha256(audit.canonical(entry)).hexdigest()
            f.write(json.dumps(entry, separators=(",", ":")).encode() + b"\n")
    return prev


def test_verify_of_a_big_log_stays_in_bounded_memory(tmp_path: Path) -> None:
    log = tmp_path / "big.jsonl"
    head = _chain(log, 200 * 1024 * 1024)
    with open(log, "ab") as f:  # then a 100 MB line with no end: a damaged tail, never held whole
        for _ in range(100):
            f.write(b"y" * (1024 * 1024))
    argv = [*BRIDGE_CLI, "audit", "verify", str(log), "--expect-head", head]
    code, max_rss_kib, err = subprocess.run([sys.executable, "-c", MEASURE, *argv], capture_output=True, text=True,
                                            env={"PYTHONPATH": str(REPO)}).stdout.split(" ", 2)
    assert code == "1" and f"{log}:{200 * 1024 * 1024 // 4200 + 1}: broken: not valid JSON" in err
    assert int(max_rss_kib) < 64 * 1024, f"verify of a 300 MB log used {max_rss_kib} KiB"
    log.write_bytes(b"")


def test_expect_head_is_any_line_of_the_chain(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    fill(log, 5)
    hashes = [e["hash"] for e in audit_lines(log)]
    assert audit.verify(log, expect=hashes[2]).head_line == 3
    assert audit.verify(log, expect=hashes[-1]).head_line == 5
    missing = audit.verify(log, expect="f" * 64)
    assert not missing.ok and missing.bad_line == 6 and "cut from the end" in missing.reason


def test_head_without_target_reads_this_machine_s_log(sec: Callable[..., Result], tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    fill(log, 2)
    assert sec("audit", "head", "--file", str(log)).out.strip() == audit_lines(log)[-1]["hash"]
    assert sec("audit", "head", "--file", str(tmp_path / "none.jsonl")).out.strip() == audit.GENESIS


def test_root_reads_the_server_log_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home) -> None:
    server_log, key = tmp_path / "var/audit.jsonl", tmp_path / "audit.key"
    key.write_bytes(b"k" * 32)
    key.chmod(0o600)
    monkeypatch.setattr(audit, "SERVER_LOG", server_log)
    monkeypatch.setattr(audit, "SERVER_KEY", key)
    assert audit.reading_log_path() == audit.client_log_path()  # no server log here: your own
    audit.writer(str(server_log)).write(audit.build_entry(action="exec", user="u"))
    assert audit.reading_log_path() == server_log and audit_lines(server_log)[0]["alg"] == "hmac-sha256"
    assert audit.verify(server_log, audit.verify_key(server_log)).ok
    key.chmod(0o644)
    with pytest.raises(audit.AuditError, match="readable by others"):
        audit.verify_key(server_log)
