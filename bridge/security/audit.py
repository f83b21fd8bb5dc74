"""A tamper-evident audit log: one JSON line per operation, each chained to the one before.

Every entry carries `prev` (the previous entry's hash) and `hash` (sha256, or HMAC-SHA256
with `$BRIDGE_AUDIT_KEY`, over the entry's canonical JSON without `hash`). An edited line
fails its own hash, a deleted or moved line breaks the `prev` link, so `verify` names the
first bad line. Writers hold an exclusive `fcntl` lock from reading the last hash to
appending, so concurrent processes never interleave or fork the chain. Truncating the tail
is caught by a head (the hash of a line) kept off the box: `verify(expect=HEAD)`.

On a server the log belongs to root: a guard running as a login account hands its records
to the audit writer (bridge.security.auditd) over a unix socket, `writer(destination)`.
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
from typing import TYPE_CHECKING, NamedTuple

from bridge.errors import BridgeError, ExitCode
from bridge.paths import state_dir
from bridge.security.secrets import mask_text

if TYPE_CHECKING:
    from bridge import frames

GENESIS = "0" * 64
SERVER_LOG = Path("/var/log/bridge/audit.jsonl")
SERVER_KEY = Path("/etc/bridge/audit.key")
DEFAULT_SOCKET = "/run/bridge/audit.sock"
MAX_RECORD = 64 * 1024  # one record on the writer's socket; longer is refused
MAX_LINE = 1024 * 1024  # a longer line is damage, and verify reads no more of it than this
WRITER_FIELDS = ("time", "host")  # set by the writer, never taken from a record
_TAIL_CHUNK = 4096


class AuditError(BridgeError):
    """The audit log cannot be read or written."""


class WriterDown(AuditError):
    """The audit writer cannot be reached or refused the record: nothing may run unaudited."""

    exit_code: int = ExitCode.POLICY
    default_hint = "start it as root: `systemctl start bridge-audit` (unit from `bridge audit install`)"


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


def reading_log_path() -> Path:
    """The log `audit show/verify` read with no FILE: `$BRIDGE_AUDIT_LOG`, else the server's for root
    when it exists (root on a server reads the trail with no path), else the client log."""
    if os.environ.get("BRIDGE_AUDIT_LOG"):
        return Path(os.environ["BRIDGE_AUDIT_LOG"])
    if os.geteuid() == 0 and SERVER_LOG.exists():
        return SERVER_LOG
    return client_log_path()


def verify_key(path: Path, key_file: Path | None = None) -> bytes | None:
    """The key to verify `path` with: `key_file`, else `$BRIDGE_AUDIT_KEY`, else the server's key
    for the server's log; raises AuditError when a key file cannot be read."""
    if key_file is not None:
        key = server_key(key_file)
        if key is None:
            raise AuditError(f"audit key {key_file} does not exist")
        return key
    return audit_key() or (server_key() if path == SERVER_LOG else None)


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


class FileWriter(NamedTuple):
    """Appends straight to a log this process may write: root's guard, the writer service, tests."""

    path: Path
    key: bytes | None = None

    def write(self, fields: dict) -> str:
        """Append one record; returns the new head; raises WriterDown when the log cannot be written."""
        try:
            return append(self.path, fields, self.key)["hash"]
        except OSError as e:
            raise WriterDown(f"audit log {self.path} not written: {e.strerror or e}") from e

    def begin(self, fields: dict) -> "Pending":
        """Nothing to open for a log we write ourselves: the record is written when it is finished."""
        self.ready()
        return Pending(self)

    def ready(self) -> None:
        """Raise WriterDown unless a record could be appended now."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
        except OSError as e:
            raise WriterDown(f"audit log {self.path} cannot be written: {e.strerror or e}") from e

    def head(self) -> str:
        """The hash of the last line, GENESIS for an empty or missing log."""
        try:
            with open(self.path, "rb") as f:
                return _last_hash(f)
        except FileNotFoundError:
            return GENESIS
        except OSError as e:
            raise WriterDown(f"audit log {self.path} not readable: {e.strerror or e}") from e


class SocketWriter(NamedTuple):
    """Hands records to the root-owned audit writer over its unix socket (bridge.security.auditd)."""

    path: str

    def write(self, fields: dict) -> str:
        """Send one record (the writer sets time and host); returns the new head; raises WriterDown."""
        peer = self._connect()
        try:
            return _exchange(peer, b"W", _wire(fields), self.path)
        finally:
            peer.close()

    def begin(self, fields: dict) -> "Pending":
        """Open an operation's record before it runs, on a connection kept until `Pending.finish`:
        if this process dies first, the writer writes the opening record itself; raises WriterDown."""
        peer = self._connect()
        try:
            _exchange(peer, b"B", _wire(fields), self.path)
        except WriterDown:
            peer.close()
            raise
        return Pending(self, peer)

    def head(self) -> str:
        """The writer's current head; raises WriterDown."""
        peer = self._connect()
        try:
            return _exchange(peer, b"H", b"", self.path)
        finally:
            peer.close()

    def _connect(self) -> "frames.Peer":
        """A connection to the writer; raises WriterDown when nothing answers."""
        from bridge import frames

        peer = frames.connect(self.path)
        if peer is None:
            raise WriterDown(f"the audit writer is down (nothing answers on {self.path})")
        peer.sock.settimeout(10)
        return peer


class Pending(NamedTuple):
    """An operation's record opened before it ran; `finish` writes it with the outcome, as one line."""

    sink: "FileWriter | SocketWriter"
    peer: "frames.Peer | None" = None

    def finish(self, fields: dict) -> str:
        """Write the whole record; returns the new head; raises WriterDown.

        A writer restarted in between has forgotten the opening: the record is then sent afresh.
        """
        if self.peer is None:
            return self.sink.write(fields)
        try:
            return _exchange(self.peer, b"F", _wire(fields), str(getattr(self.sink, "path", "")))
        except WriterDown:
            return self.sink.write(fields)
        finally:
            self.peer.close()


def _wire(fields: dict) -> bytes:
    """A record as the writer takes it: JSON, without the fields the writer sets itself."""
    record = {k: v for k, v in fields.items() if k not in WRITER_FIELDS}
    return json.dumps(record, ensure_ascii=True, separators=(",", ":")).encode()


def _exchange(peer: "frames.Peer", kind: bytes, payload: bytes, where: str) -> str:
    """One request, one answer: `O` + head, or `E` + why; raises WriterDown."""
    try:
        peer.send(kind, payload)
        answer, text = peer.recv(MAX_RECORD)
    except (OSError, EOFError, ValueError) as e:
        raise WriterDown(f"the audit writer on {where} did not answer: {e}") from e
    if answer != b"O":
        raise WriterDown(f"the audit writer refused the record: {text.decode(errors='replace')}")
    return text.decode()


def writer(destination: str | None = None) -> FileWriter | SocketWriter:
    """Where a server-side record goes: `unix:PATH` or a `*.sock` path is the writer's socket, any
    other path a log written directly; None is the default: /var/log/bridge for root, else the socket."""
    if destination is None:
        return FileWriter(SERVER_LOG, server_key()) if os.geteuid() == 0 else SocketWriter(DEFAULT_SOCKET)
    if destination.startswith("unix:"):
        return SocketWriter(destination[len("unix:"):])
    if destination.endswith(".sock"):
        return SocketWriter(destination)
    return FileWriter(Path(destination), server_key() if os.geteuid() == 0 else None)


def server_key(path: Path | None = None) -> bytes | None:
    """The server's HMAC key (root-only file), None when there is none; raises AuditError if others may read it."""
    path = path or SERVER_KEY
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise AuditError(f"audit key {path}: {e.strerror}") from e
    if st.st_mode & 0o077:
        raise AuditError(f"audit key {path} is readable by others", hint=f"chmod 600 {path}")
    try:
        return path.read_bytes().strip() or None
    except OSError as e:
        raise AuditError(f"audit key {path}: {e.strerror}", hint="read it as root") from e


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
    """What verify found: how many lines were good, the first bad line with the reason, and
    where the expected head was found (when one was given)."""

    lines: int
    head: str
    bad_line: int | None = None
    reason: str = ""
    head_line: int | None = None

    @property
    def ok(self) -> bool:
        """True when every line is intact and chained."""
        return self.bad_line is None


def verify(path: Path, key: bytes | None = None, expect: str | None = None) -> VerifyResult:
    """Check every line's hash and link, in constant memory; with `expect`, that some line's hash is
    it (a head kept elsewhere: a cut tail loses it). Raises AuditError when the file cannot be read."""
    prev, count, found = GENESIS, 0, None
    for number, raw in _numbered_lines(path):
        problem = _check_line(raw, prev, key)
        if problem:
            return VerifyResult(count, prev, number, problem)
        prev, count = json.loads(raw)["hash"], number
        if prev == expect:
            found = number
    if expect is not None and found is None:
        return VerifyResult(count, prev, count + 1, f"the expected head {expect} is not in the log "
                                                    "(lines were cut from the end, or it is another log)")
    return VerifyResult(count, prev, head_line=found)


def _numbered_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(1-based number, raw line without newline) for each line; an empty line counts, it is damage.

    A line longer than MAX_LINE is cut there (so it fails its check) and the rest of it skipped:
    memory stays bounded whatever the file holds.
    """
    try:
        with open(path, "rb") as f:
            number = 0
            while raw := f.readline(MAX_LINE):
                number += 1
                if not raw.endswith(b"\n"):
                    _skip_rest_of_line(f)
                yield number, raw.rstrip(b"\n")
    except OSError as e:
        raise AuditError(f"cannot read audit log {path}: {e.strerror}") from e


def _skip_rest_of_line(f) -> None:
    """Read past the end of an over-long line without keeping it."""
    while (chunk := f.readline(MAX_LINE)) and not chunk.endswith(b"\n"):
        pass


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
