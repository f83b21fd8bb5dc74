"""A tamper-evident audit log: one JSON line per operation, each chained to the one before.

Every entry carries `prev` (the previous entry's hash) and `hash` (sha256, or HMAC-SHA256
with `$BRIDGE_AUDIT_KEY`, over the entry's canonical JSON without `hash`). An edited line
fails its own hash, a deleted or moved line breaks the `prev` link, so `verify` names the
first bad line. Writers hold an exclusive `fcntl` lock from reading the last hash to
appending, so concurrent processes never interleave or fork the chain. Truncating the tail
is caught by comparing `head()` with a copy kept off the box.
"""
from __future__ import annotations

import fcntl
import getpass
import hashlib
import hmac
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from bridge.errors import BridgeError
from bridge.paths import state_dir
from bridge.security.secrets import mask_text

GENESIS = "0" * 64
SERVER_LOG = Path("/var/log/bridge/audit.jsonl")
_TAIL_CHUNK = 4096


class AuditError(BridgeError):
    """The audit log cannot be read or written."""


def client_log_path() -> Path:
    """`$BRIDGE_AUDIT_LOG`, else the user's state dir."""
    override = os.environ.get("BRIDGE_AUDIT_LOG")
    return Path(override) if override else state_dir() / "audit.jsonl"


def server_log_path() -> Path:
    """`$BRIDGE_AUDIT_LOG`, else /var/log/bridge when writable (root), else the state dir."""
    override = os.environ.get("BRIDGE_AUDIT_LOG")
    if override:
        return Path(override)
    if _writable_dir(SERVER_LOG.parent):
        return SERVER_LOG
    return state_dir() / "audit.jsonl"


def _writable_dir(folder: Path) -> bool:
    """True when `folder` exists or can be created, and we may write in it."""
    try:
        folder.mkdir(mode=0o750, parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def audit_key() -> bytes | None:
    """The HMAC key from `$BRIDGE_AUDIT_KEY`, when the log is keyed."""
    key = os.environ.get("BRIDGE_AUDIT_KEY")
    return key.encode() if key else None


def canonical(entry: dict) -> bytes:
    """The bytes that are hashed: sorted keys, no spaces, ASCII, without the `hash` field."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def entry_hash(entry: dict, key: bytes | None) -> str:
    """sha256 of the canonical entry, or its HMAC-SHA256 when a key is set."""
    data = canonical(entry)
    if key:
        return hmac.new(key, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


def append(path: Path, fields: dict, key: bytes | None = None) -> dict:
    """Append one chained entry under an exclusive lock; returns it with `prev` and `hash`; raises OSError."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "r+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        entry = dict(fields, prev=_last_hash(f), alg="hmac-sha256" if key else "sha256")
        entry["hash"] = entry_hash(entry, key)
        f.write(json.dumps(entry, ensure_ascii=True, separators=(",", ":")).encode() + b"\n")
        f.flush()
        os.fsync(f.fileno())
    return entry


def _last_hash(f) -> str:
    """The `hash` of the file's last line (read backwards), GENESIS for an empty file."""
    line = _last_line(f)
    if not line:
        return GENESIS
    try:
        return str(json.loads(line)["hash"])
    except (ValueError, KeyError, TypeError):
        # A damaged last line: chain to its raw bytes; verify will report that line anyway.
        return hashlib.sha256(line).hexdigest()


def _last_line(f) -> bytes:
    """The last non-empty line of an open binary file."""
    end = f.seek(0, os.SEEK_END)
    data = b""
    pos = end
    while pos > 0:
        step = min(_TAIL_CHUNK, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + data
        if data.rstrip(b"\n").count(b"\n") >= 1:
            break
    return data.rstrip(b"\n").rsplit(b"\n", 1)[-1]


def now_iso() -> str:
    """UTC time with milliseconds, the audit `time` field."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def source_address() -> str | None:
    """The client address sshd reports (`SSH_CLIENT`), or None for a local run."""
    client = os.environ.get("SSH_CLIENT") or os.environ.get("SSH_CONNECTION") or ""
    return client.split()[0] if client.split() else None


def build_entry(*, action: str, command: str | None = None, exit_code: int | None = None,
                duration: float | None = None, decision: str = "allowed", rule: str | None = None,
                host: str | None = None, workspace: str | None = None, user: str | None = None,
                secrets: tuple[str, ...] = (), **extra: object) -> dict:
    """The audit fields of one operation, with secrets masked out of the command."""
    return {
        "time": now_iso(),
        "user": user or _local_user(),
        "source": source_address(),
        "host": host or socket.gethostname(),
        "workspace": workspace,
        "action": action,
        "command": None if command is None else mask_text(command, secrets),
        "exit_code": exit_code,
        "duration": None if duration is None else round(duration, 3),
        "decision": decision,
        "rule": rule,
        **extra,
    }


def _local_user() -> str:
    """The login name, without failing in containers that lack a passwd entry."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def record(*, action: str, command: str | None = None, exit_code: int | None = None,
           duration: float | None = None, decision: str = "allowed", rule: str | None = None,
           host: str | None = None, workspace: str | None = None, user: str | None = None,
           secrets: tuple[str, ...] = (), path: Path | None = None, **extra: object) -> dict | None:
    """Append one line to the client audit log; a disk error warns on stderr and returns None, never raises."""
    entry = build_entry(action=action, command=command, exit_code=exit_code, duration=duration,
                        decision=decision, rule=rule, host=host, workspace=workspace, user=user,
                        secrets=secrets, **extra)
    target = path or client_log_path()
    try:
        return append(target, entry, audit_key())
    except OSError as e:
        print(f"bridge: warning: audit log {target} not written: {e.strerror or e}", file=sys.stderr)
        return None


class VerifyResult(NamedTuple):
    """What verify found: how many lines were good, and the first bad line with the reason."""

    lines: int
    head: str
    bad_line: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        """True when every line is intact and chained."""
        return self.bad_line is None


def verify(path: Path, key: bytes | None = None) -> VerifyResult:
    """Check every line's hash and link; raises AuditError when the file cannot be read."""
    prev, count = GENESIS, 0
    for number, raw in _numbered_lines(path):
        problem = _check_line(raw, prev, key)
        if problem:
            return VerifyResult(count, prev, number, problem)
        prev, count = json.loads(raw)["hash"], number
    return VerifyResult(count, prev)


def _numbered_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(1-based number, raw line without newline) for each line; an empty line counts, it is damage."""
    try:
        with open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                yield number, raw.rstrip(b"\n")
    except OSError as e:
        raise AuditError(f"cannot read audit log {path}: {e.strerror}") from e


def _check_line(raw: bytes, prev: str, key: bytes | None) -> str:
    """Why this line breaks the chain, or "" when it is intact."""
    try:
        entry = json.loads(raw)
    except ValueError:
        return "not valid JSON (edited or truncated)"
    if not isinstance(entry, dict) or "hash" not in entry:
        return "not an audit entry (no hash)"
    if entry.get("alg") != ("hmac-sha256" if key else "sha256"):
        return _alg_problem(entry.get("alg"), key)
    if not hmac.compare_digest(str(entry["hash"]), entry_hash(entry, key)):
        return "content does not match its hash (edited)"
    if entry.get("prev") != prev:
        return "does not follow the line before it (a line was deleted, inserted or moved)"
    return ""


def _alg_problem(alg: object, key: bytes | None) -> str:
    """Why the line's hash algorithm is not the one this verification expects."""
    if key is None and alg == "hmac-sha256":
        return "keyed with HMAC: set BRIDGE_AUDIT_KEY to verify"
    return f"hash algorithm {alg!r} where {'hmac-sha256' if key else 'sha256'} was expected"


def read_entries(path: Path) -> Iterator[dict]:
    """Every parseable entry, in order, for `audit show`; raises AuditError when unreadable."""
    for _number, raw in _numbered_lines(path):
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict):
            yield entry


def parse_since(text: str, now: float | None = None) -> datetime:
    """`--since`: an ISO date/time, or an age like 30m, 2h, 7d; raises AuditError."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if text[-1:] in units and text[:-1].isdigit():
        seconds = int(text[:-1]) * units[text[-1]]
        return datetime.fromtimestamp((now or time.time()) - seconds, timezone.utc)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise AuditError(f"--since {text!r}: not a date or age", hint="use 2024-05-01, 2024-05-01T12:00 or 30m, 2h, 7d") from e
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def select(entries: Iterator[dict], *, user: str | None = None, action: str | None = None,
           since: datetime | None = None) -> list[dict]:
    """The entries matching every given filter."""
    return [e for e in entries if (user is None or e.get("user") == user)
            and (action is None or e.get("action") == action)
            and (since is None or _entry_time(e) >= since)]


def _entry_time(entry: dict) -> datetime:
    """An entry's time, the epoch when missing or malformed."""
    try:
        return datetime.fromisoformat(str(entry.get("time", "")).replace("Z", "+00:00"))
    except ValueError:
        return datetime.fromtimestamp(0, timezone.utc)
