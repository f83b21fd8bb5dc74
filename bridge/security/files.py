"""sftp and scp through the guard: the `files` permission, confined to the granted workspaces, every
file operation audited with its names before it reaches the server.

For a key with a forced command, sshd runs the guard for an sftp subsystem request too, with
`SSH_ORIGINAL_COMMAND` set to the subsystem's command from sshd_config (`internal-sftp`, or
`/usr/lib/openssh/sftp-server`); OpenSSH 9's scp speaks sftp the same way. The guard then runs
OpenSSH's own sftp-server, and relays the client's requests to it packet by packet, writing one
audit line per request that names a file (open, remove, rename, mkdir, ...) before passing it on.
The names are read from the protocol itself, byte-exact: sftp-server's own log (`-l INFO -e`)
prints names raw, so a file name holding a newline could forge a log line there.

Confinement, when the grant names workspaces: sftp-server starts in a new user and mount
namespace whose root is an empty read-only tmpfs holding only /usr (and the /bin, /lib links)
and the granted workspace folders, bind-mounted at their own paths, chrooted there, with
no_new_privs. Nothing else of the filesystem exists for it, symlinks included; inside the
workspaces the account's own file permissions apply. A grant of every path (`*`) is not
confined. (/etc/passwd, /etc/group and /dev/null are there too: sftp-server needs them to start.)
Without user namespaces (sysctl user.max_user_namespaces=0) a confined grant is refused.
"""
from __future__ import annotations

import glob
import os
import select
import struct
import subprocess
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING

from bridge.security.policy import Decision, Grant, check_permission
from bridge.security.session import forward_signals

if TYPE_CHECKING:
    import ctypes

SFTP_SERVER = "/usr/lib/openssh/sftp-server"
MAX_PACKET = 1024 * 1024  # sftp-server itself takes at most 256 KiB
CHUNK = 262144
OPS = {3: "open", 9: "setstat", 11: "opendir", 13: "remove", 14: "mkdir", 15: "rmdir", 18: "rename",
       20: "symlink"}
EXTENDED_OPS = {b"posix-rename@openssh.com": "rename", b"hardlink@openssh.com": "hardlink",
                b"lsetstat@openssh.com": "setstat"}
TWO_NAMES = {"rename", "symlink", "hardlink"}
OPEN_MODES = ((0x01, "read"), (0x02, "write"), (0x04, "append"), (0x08, "create"), (0x10, "truncate"),
              (0x20, "exclusive"))
Audit = Callable[[dict], bool]


class ProtocolError(ValueError):
    """The client's byte stream is not sftp: the session ends."""


def is_request(command: str | None) -> bool:
    """True for what sshd hands the guard on an sftp subsystem request: internal-sftp or sftp-server."""
    words = (command or "").split()
    return bool(words) and (words[0] == "internal-sftp" or os.path.basename(words[0]) == "sftp-server")


def check(grant: Grant | None) -> tuple[Decision, list[str] | None]:
    """The `files` decision, and the folders to confine the session to (None: not confined)."""
    decision = check_permission(grant, "files")
    if grant is None or not decision.allowed:  # None is never allowed
        return decision, None
    if grant.role.may("sudo"):
        return decision, None  # a role that may become root is not confined by a folder list
    roots = workspace_roots(grant.key_workspaces or grant.workspaces)  # the key's grant narrows the policy's
    if roots == []:
        return Decision(False, f"{grant.role.name}.files-workspaces",
                        f"none of the workspaces {list(grant.workspaces)} exists here"), None
    return decision, roots


def workspace_roots(patterns: tuple[str, ...]) -> list[str] | None:
    """The existing folders the workspace globs name; None when one of them grants every path."""
    expanded = [os.path.expanduser(p) for p in patterns]
    if any(p in ("*", "/", "/*") for p in expanded):
        return None
    found = {os.path.realpath(m) for p in expanded for m in glob.glob(p) if os.path.isdir(m)}
    return sorted(found)


def argv(roots: list[str] | None, home: str) -> list[str]:
    """sftp-server, starting in the first workspace (home when not confined)."""
    return [SFTP_SERVER, "-d", roots[0] if roots else home]


def serve(command: list[str], roots: list[str] | None, audit: Audit, stdin_fd: int = 0) -> int:
    """Run sftp-server with its replies going straight to the client, relaying and auditing the requests.

    Returns its exit code; 126 when the confinement cannot be set up.
    """
    start = command[-1]  # argv() ends with the start folder
    try:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, preexec_fn=lambda: confine(roots, start))
    except (OSError, subprocess.SubprocessError) as e:
        os.write(2, f"bridge: refused: sftp cannot be confined to the workspaces here ({e}); "
                    "user namespaces must be on: sysctl user.max_user_namespaces\n".encode())
        return 126
    assert proc.stdin is not None  # stdin=PIPE
    with forward_signals(proc.pid):
        try:
            relay(stdin_fd, proc.stdin, audit, start)
        except (ProtocolError, BrokenPipeError):
            pass  # the session ends; sftp-server sees EOF
        finally:
            _close(proc.stdin)
        code = proc.wait()
    return code if code >= 0 else 128 - code


def _close(pipe: IO[bytes]) -> None:
    """Close sftp-server's stdin; it may be gone already."""
    try:
        pipe.close()
    except OSError:
        pass


def relay(stdin_fd: int, server: IO[bytes], audit: Audit, cwd: str) -> None:
    """Pass the client's packets to sftp-server, each file operation audited first; stops at EOF,
    when sftp-server is gone, or when a record cannot be written (nothing runs unaudited)."""
    buffer = bytearray()
    waiting = select.poll()
    waiting.register(stdin_fd, select.POLLIN)
    waiting.register(server.fileno(), 0)  # only POLLERR, which a pipe reports once sftp-server has exited
    while True:
        ready = dict(waiting.poll())
        if ready.get(server.fileno()):
            return
        data = os.read(stdin_fd, CHUNK)
        if not data:
            return
        buffer += data
        for packet in packets(buffer):
            op = describe(packet, cwd)
            if op is not None and not audit(op):
                return
            server.write(packet)
        server.flush()


def packets(buffer: bytearray) -> Iterator[bytes]:
    """Take each whole packet (length prefix included) off the front of `buffer`; raises ProtocolError."""
    while len(buffer) >= 4:
        (size,) = struct.unpack_from(">I", buffer)
        if size > MAX_PACKET:
            raise ProtocolError(f"a {size}-byte sftp packet")
        if len(buffer) < 4 + size:
            return
        packet = bytes(buffer[:4 + size])
        del buffer[:4 + size]
        yield packet


def describe(packet: bytes, cwd: str) -> dict | None:
    """The audit fields of a request that names a file (op, path, target, mode); None for any other."""
    if len(packet) < 9:
        return None
    kind, body = packet[4], packet[9:]  # length, type, request id
    op = OPS.get(kind)
    if kind == 200:
        name, body = _string(body)
        op = EXTENDED_OPS.get(name)
    if op is None:
        return None
    path, body = _string(body)
    fields = {"op": op, "path": _name(path, cwd)}
    if op in TWO_NAMES:
        fields["target"] = _name(_string(body)[0], cwd)
    if op == "open" and len(body) >= 4:
        (flags,) = struct.unpack_from(">I", body)
        fields["mode"] = ",".join(word for bit, word in OPEN_MODES if flags & bit)
    return fields


def _string(data: bytes) -> tuple[bytes, bytes]:
    """One sftp string (uint32 length, bytes) and what follows; raises ProtocolError when cut short."""
    if len(data) < 4:
        raise ProtocolError("a string cut short")
    (size,) = struct.unpack_from(">I", data)
    if len(data) < 4 + size:
        raise ProtocolError("a string cut short")
    return data[4:4 + size], data[4 + size:]


def _name(raw: bytes, cwd: str) -> str:
    """A file name as text (undecodable bytes as \\x escapes), relative names joined to the start folder."""
    text = raw.decode("utf-8", errors="backslashreplace")
    return os.path.normpath(os.path.join(cwd, text)) if text else cwd


# Linux constants (<sched.h>, <sys/mount.h>, <linux/prctl.h>): ctypes has no names for them.
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_SET_NO_NEW_PRIVS = 38
NEW_ROOT = "/tmp"  # any folder works as the mount point: the namespace's tmpfs hides what was there
SYSTEM_PATHS = ("/usr", "/etc/passwd", "/etc/group", "/dev/null")  # what sftp-server needs to start


def confine(roots: list[str] | None, start: str) -> None:
    """In the child before exec: no_new_privs, and with `roots`, a namespace holding only them and /usr."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    _ok(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    if roots is None:
        return
    uid, gid = os.getuid(), os.getgid()
    _ok(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare (user namespaces off?)")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    # Opened in the new namespace, before the tmpfs hides NEW_ROOT: a workspace may lie below it.
    sources = {path: os.open(path, os.O_PATH) for path in [*SYSTEM_PATHS, *roots]}
    _mount(libc, b"tmpfs", NEW_ROOT, b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0755,size=64k")
    for path, fd in sources.items():
        inside = NEW_ROOT + path
        if os.path.isdir(path):
            os.makedirs(inside, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(inside), exist_ok=True)
            os.close(os.open(inside, os.O_CREAT | os.O_WRONLY, 0o644))
        _mount(libc, f"/proc/self/fd/{fd}".encode(), inside, None, MS_BIND | MS_REC)
        os.close(fd)  # an open folder outside the new root would be a way back out of it
    for link in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{link}"):
            os.symlink(os.readlink(f"/{link}"), f"{NEW_ROOT}/{link}")
    _mount(libc, None, NEW_ROOT, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chroot(NEW_ROOT)
    os.chdir(start)


def _mount(libc: "ctypes.CDLL", source: bytes | None, target: str, kind: bytes | None, flags: int,
           data: bytes | None = None) -> None:
    """mount(2), raising OSError on failure."""
    _ok(libc.mount(source, target.encode(), kind, flags, data), f"mount {target}")


def _ok(result: int, what: str) -> None:
    """Raise OSError with errno when a libc call failed."""
    if result != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
