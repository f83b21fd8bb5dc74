"""The audit writer: a root-owned service that appends other accounts' records to a log they cannot touch.

A guard runs as the login account, and so do the commands it allows: if it wrote the log
itself, those commands could rewrite it. So the guard sends each record over a unix socket
to this writer (run as root by `bridge audit serve`, under the unit `bridge audit install`
writes), which checks the record, stamps it with the time, the host and the sender's
credentials as the kernel reports them (SO_PEERCRED: a record cannot name another sender),
chains it and appends it to a 0600 root-owned log. The HMAC key, if any, is read here only.

Protocol (bridge.frames: 1 byte kind, 4 bytes length, payload):
  W record (a JSON object, at most MAX_RECORD bytes) → O new head | E why
  B record: begin it, before the operation runs      → O "" | E why   (kept, not written yet)
  F record: finish it, with the outcome              → O new head | E why
  H                                                  → O current head
A connection that ends between B and F (its guard was killed, say) gets the begun record
written as it was, with `ended: guard-lost`: an operation that began is never missing.
A malformed record is answered with E and the connection stays usable; an oversized frame is
answered with E and the connection closed; a silent client is dropped after IDLE seconds.
Each client has its own thread, so none can hold up another.
"""
from __future__ import annotations

import json
import os
import pwd
import re
import signal
import socket
import threading
from pathlib import Path

from bridge import frames, unixserver
from bridge.security import audit

IDLE = 10.0
PER_UID = 128  # open connections per sending uid (one per running operation): a flood stalls only that uid
MAX_FIELDS = 48
FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")
# Set by the writer from what it knows itself, never from the record.
RESERVED = frozenset({*audit.WRITER_FIELDS, "prev", "hash", "alg", "peer_uid", "peer_gid", "peer_pid",
                      "peer_user", "ended"})
REQUIRED = {"action": str, "decision": str}
Scalar = (str, int, float, bool, type(None))


class BadRecord(ValueError):
    """A record that is not one bounded, typed audit record: refused, never written."""


def parse_record(payload: bytes) -> dict:
    """The record's fields, checked: a JSON object of at most MAX_FIELDS scalar fields with plain
    names, `action` and `decision` strings, no field the writer sets; raises BadRecord."""
    try:
        record = json.loads(payload)
    except ValueError as e:
        raise BadRecord(f"not JSON: {e}") from e
    if not isinstance(record, dict) or len(record) > MAX_FIELDS:
        raise BadRecord(f"a record is a JSON object of at most {MAX_FIELDS} fields")
    for name, value in record.items():
        _check_field(name, value)
    for name, kind in REQUIRED.items():
        if not isinstance(record.get(name), kind):
            raise BadRecord(f"field {name!r} must be a {kind.__name__}")
    return record


def _check_field(name: str, value: object) -> None:
    """One field: a plain name the writer does not own, a scalar value; raises BadRecord."""
    if not FIELD_NAME.match(name):
        raise BadRecord(f"field name {name[:40]!r} is not [a-z][a-z0-9_]*")
    if name in RESERVED:
        raise BadRecord(f"field {name!r} is set by the writer, not by the record")
    if not isinstance(value, Scalar):
        raise BadRecord(f"field {name!r} must be a string, number, boolean or null")


def stamp(record: dict, peer: tuple[int, int, int]) -> dict:
    """The entry to append: the record, then the writer's own time, host and the sender's credentials."""
    pid, uid, gid = peer
    return {**record, "time": audit.now_iso(), "host": socket.gethostname(),
            "peer_uid": uid, "peer_gid": gid, "peer_pid": pid, "peer_user": _user_name(uid)}


def _user_name(uid: int) -> str | None:
    """The account name of `uid`, None when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


class Writer:
    """The service: one log, one optional key, one lock so appends from many clients keep one chain.

    `opened` holds the records begun (B) and not yet finished (F), by connection: a connection
    that ends without finishing gets its record written as it was opened, marked `ended`.
    """

    def __init__(self, log: Path, key: bytes | None) -> None:
        self.sink = audit.FileWriter(log, key)
        self.lock = threading.Lock()
        self.open: dict[int, int] = {}  # uid -> connections open now
        self.opened: dict[int, dict] = {}  # connection id -> its begun record
        self.counting = threading.Lock()

    def answer(self, kind: bytes, payload: bytes, peer: tuple[int, int, int], conn: int) -> tuple[bytes, bytes]:
        """The reply frame to one request frame of connection `conn`."""
        try:
            if kind == b"H":
                with self.lock:
                    return b"O", self.sink.head().encode()
            if kind in (b"W", b"B", b"F"):
                return b"O", self._record(kind, stamp(parse_record(payload), peer), conn).encode()
        except BadRecord as e:
            return b"E", f"bad record: {e}".encode()
        except audit.WriterDown as e:
            return b"E", e.message.encode()
        return b"E", f"unknown request {kind!r}".encode()

    def _record(self, kind: bytes, entry: dict, conn: int) -> str:
        """W writes, B keeps the record for later (answering ""), F writes it finished; raises WriterDown."""
        with self.lock:
            if kind == b"B":
                self.opened[conn] = entry
                return ""
            if kind == b"F":
                self.opened.pop(conn, None)
            return self.sink.write(entry)

    def abandon(self, conn: int, why: str) -> None:
        """Write the record `conn` began and never finished, marked with why it ended."""
        with self.lock:
            entry = self.opened.pop(conn, None)
            if entry is not None:
                try:
                    self.sink.write({**entry, "ended": why})
                except audit.WriterDown:
                    pass  # the log itself is failing: nothing more can be kept

    def abandon_all(self, why: str) -> None:
        """At shutdown: every begun record is written, none forgotten."""
        for conn in list(self.opened):
            self.abandon(conn, why)

    def serve_client(self, sock: socket.socket) -> None:
        """Answer one client's requests until it hangs up, goes quiet or breaks the framing.

        A connection holding a begun record may stay quiet as long as its operation runs.
        """
        peer, conn = frames.Peer(sock), id(sock)
        creds = unixserver.peer_credentials(sock)
        if not self._admit(creds[1], +1):
            self._refuse(peer, f"more than {PER_UID} connections open from uid {creds[1]}")
            return
        try:
            sock.settimeout(IDLE)
            while True:
                try:
                    kind, payload = peer.recv(audit.MAX_RECORD)
                except frames.FrameTooLarge as e:
                    peer.send(b"E", f"record too large: {e}".encode())
                    return
                reply = self.answer(kind, payload, creds, conn)
                sock.settimeout(None if conn in self.opened else IDLE)
                peer.send(*reply)
        except (OSError, EOFError):
            pass  # gone, or silent past IDLE: only this client's thread ends
        finally:
            self.abandon(conn, "guard-lost")  # the guard died (or was killed) before it could say how it ended
            self._admit(creds[1], -1)
            peer.close()

    def _admit(self, uid: int, change: int) -> bool:
        """Count a connection of `uid` in (+1) or out (-1); False (and not counted) when it is over PER_UID."""
        with self.counting:
            count = self.open.get(uid, 0) + change
            if count > PER_UID:
                return False
            self.open[uid] = count
            return True

    @staticmethod
    def _refuse(peer: frames.Peer, why: str) -> None:
        """Answer a connection that is not served with one error frame, and close it."""
        try:
            peer.send(b"E", why.encode())
        except OSError:
            pass
        peer.close()


def check_owned(*paths: Path) -> None:
    """Refuse a log, or a folder, that another account could write, delete or replace; raises AuditError."""
    for path in paths:
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise audit.AuditError(f"{path} may be changed by an account other than the writer's",
                                   hint=f"chown root {path} && chmod go-w {path}")


def open_listener(path: Path) -> socket.socket:
    """The writer's socket, 0666 (any account may hand in records, as itself) in a 0755 folder only root writes."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    check_owned(path.parent)  # a folder others may write lets them swap the socket for their own
    return unixserver.listen(str(path), mode=0o666)


class _Stop(Exception):
    """SIGTERM: leave the accept loop and remove the socket."""


def _stop(_signum: int, _frame: object) -> None:
    raise _Stop


def serve(socket_path: Path, log: Path, key_path: Path | None = None) -> None:
    """Run the writer until SIGTERM: accept clients, one thread each; raises AuditError on a bad setup."""
    log.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    check_owned(log.parent, log)
    service = Writer(log, audit.server_key(key_path))
    listener = open_listener(socket_path)
    signal.signal(signal.SIGTERM, _stop)
    try:
        unixserver.accept_loop(listener, service.serve_client, name="audit-client")
    except _Stop:
        pass
    finally:
        listener.close()
        socket_path.unlink(missing_ok=True)
        service.abandon_all("writer-stopped")
        service.lock.acquire()  # an append in progress ends whole, and no other starts: no half line


UNIT = """[Unit]
Description=bridge audit writer (appends guard records to {log})
Documentation=https://github.com/bridge/bridge#audit

[Service]
ExecStart={bridge} audit serve --socket {socket} --log {log} --key {key}
Restart=always
RestartSec=1
User=root
UMask=0077
RuntimeDirectory=bridge
RuntimeDirectoryMode=0755
RuntimeDirectoryPreserve=yes
LogsDirectory=bridge
LogsDirectoryMode=0750
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={log_dir} {socket_dir}
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateNetwork=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
ProcSubset=pid
RestrictAddressFamilies=AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
CapabilityBoundingSet=
AmbientCapabilities=
DevicePolicy=closed
IPAddressDeny=any

[Install]
WantedBy=multi-user.target
"""


UNIT_PATH = Path("/etc/systemd/system/bridge-audit.service")


def unit_text(bridge: str, socket_path: Path, log: Path, key: Path) -> str:
    """The systemd unit that runs the writer as root, locked down to its log and socket folders."""
    return UNIT.format(bridge=bridge, socket=socket_path, log=log, key=key, log_dir=log.parent,
                       socket_dir=socket_path.parent)


def install(text: str, path: Path = UNIT_PATH) -> Path:
    """Write the unit (0644, as systemd expects); raises AuditError when that folder is not ours to write."""
    try:
        path.write_text(text)
        path.chmod(0o644)
    except OSError as e:
        raise audit.AuditError(f"cannot write {path}: {e.strerror}",
                               hint="run it as root, or `bridge audit install --print` and copy it yourself") from e
    return path
