"""Grant SSH keys a role by writing restricted `authorized_keys` lines that force `bridge guard`.

A managed line looks like

    command="/opt/bridge/bin/python3 -I -S /opt/bridge/bin/bridge guard --as alice --role operator
    --workspace /srv/app",restrict,pty ssh-ed25519 AAAA... alice@laptop

(one line). The interpreter starts isolated (`-I`: no PYTHON* variable, user site or current
folder reaches the guard) and the guard takes every setting from this line. `restrict` turns
off forwarding, agent and X11; `pty` comes back only for roles that may open a shell,
`port-forwarding` only for roles with `forward` or `tunnel`. Every rewrite is atomic (temp
file + rename) under a lock, and one key has one line: adding a key that is already in the
file replaces its line, so an older unrestricted grant cannot shadow the new one.

The line binds only while the login account cannot edit it: a file (or a folder above it)
writable by anyone but root is refused; keep keys in a root-owned AuthorizedKeysFile such as
`/etc/bridge/authorized_keys/%u`.
"""
from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import os
import pwd
import re
import shlex
import shutil
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from bridge.errors import UsageError
from bridge.security.confine import Account, account_by_name, current_account, editable_by_others
from bridge.security.guard import GuardSettings
from bridge.security.policy import Role

KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
             "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com", "ssh-dss")
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_GUARD = re.compile(r"\bguard --as ([^\s\"]+)(?: --role ([^\s\"]+))?")
_COMMAND = re.compile(r'(?:^|,)command="([^"]*)"')  # key_options never writes a quote or backslash inside


@dataclass(frozen=True)
class PublicKey:
    """An OpenSSH public key: type, base64 blob, comment."""

    kind: str
    blob: str
    comment: str = ""

    @property
    def fingerprint(self) -> str:
        """SHA256 fingerprint as `ssh-keygen -l` prints it."""
        digest = hashlib.sha256(base64.b64decode(self.blob)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class KeyEntry:
    """A bridge-managed line of an authorized_keys file."""

    user: str
    role: str | None
    key: PublicKey
    line: int
    options: str


def default_file() -> Path:
    """`~/.ssh/authorized_keys` of the account running bridge."""
    return Path.home() / ".ssh" / "authorized_keys"


def parse_public_key(text: str) -> PublicKey:
    """A single public key (`TYPE BASE64 [COMMENT]`), checked for a well-formed blob; raises UsageError."""
    parts = text.strip().split(None, 2)
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise UsageError("not an OpenSSH public key", hint="pass the contents of id_ed25519.pub, or @path/to/key.pub")
    try:
        blob = base64.b64decode(parts[1], validate=True)
        (length,) = struct.unpack(">I", blob[:4])
    except (binascii.Error, struct.error) as e:
        raise UsageError("public key data is not valid base64") from e
    if blob[4:4 + length].decode(errors="replace") != parts[0]:
        raise UsageError(f"public key data does not hold a {parts[0]} key")
    comment = re.sub(r"[^\w.@+-]", "_", parts[2].strip()) if len(parts) > 2 else ""
    return PublicKey(parts[0], parts[1], comment)


def read_key_arg(value: str) -> PublicKey:
    """`--key`: the key itself, `@file`, or a path (`~/.ssh/id_ed25519.pub`, as ssh-copy-id takes); raises UsageError."""
    words = value.split(None, 1)
    if value.startswith("@") or (words and words[0] not in KEY_TYPES):
        name = value[1:] if value.startswith("@") else value
        try:
            value = Path(name).expanduser().read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read key file {name}: {getattr(e, 'strerror', None) or e}",
                             hint="pass a public key (id_ed25519.pub), its text, or @path") from e
    return parse_public_key(value)


def bridge_command(bridge: str | None = None) -> list[str]:
    """The interpreter and launcher the forced command starts: `PYTHON -I -S LAUNCHER`.

    `-I` keeps the client's PYTHON* variables, the user site and the current folder out of the
    guard; `-S` is how bin/bridge always starts (it adds its site folders itself).
    """
    launcher = bridge or _this_launcher()
    if launcher is None:
        return [sys.executable, "-I", "-m", "bridge"]
    return [_python_for(launcher), "-I", "-S", launcher]


def _this_launcher() -> str | None:
    """The absolute path of the bridge launcher running now, else the one on PATH."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "bridge" and argv0.is_file():
        return str(argv0.absolute())
    found = shutil.which("bridge")
    return os.path.abspath(found) if found else None


def _python_for(launcher: str) -> str:
    """The python3 that launcher runs with: ours when it is us, else the one beside it (as its sh half picks)."""
    if Path(launcher) == Path(sys.argv[0]).absolute():
        return sys.executable
    for folder in (Path(launcher).resolve().parent, Path(launcher).parent):
        if os.access(folder / "python3", os.X_OK):
            return str(folder / "python3")
    return shutil.which("python3") or sys.executable


def key_options(settings: GuardSettings, role: Role, bridge: list[str]) -> str:
    """The options field: the forced guard command, restrict, and what the role needs back."""
    command = shlex.join([*bridge, *settings.argv()])
    if '"' in command or "\\" in command:
        raise UsageError(f"cannot put {command!r} in authorized_keys (quote or backslash in the path)")
    options = [f'command="{command}"', "restrict"]
    if role.may("shell"):
        options.append("pty")
    if role.may("forward") or role.may("tunnel"):
        options.append("port-forwarding")
    return ",".join(options)


def split_line(line: str) -> tuple[str, PublicKey] | None:
    """(options, key) of an authorized_keys line, or None for comments, blanks and unknown lines."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    options, rest = "", stripped
    if stripped.split(None, 1)[0] not in KEY_TYPES:
        options, rest = _split_options(stripped)
    try:
        return options, parse_public_key(rest)
    except UsageError:
        return None


def _split_options(line: str) -> tuple[str, str]:
    """Split at the first whitespace outside double quotes (options may quote spaces)."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"' and (i == 0 or line[i - 1] != "\\"):
            quoted = not quoted
        elif ch.isspace() and not quoted:
            return line[:i], line[i:].strip()
    return line, ""


def list_keys(path: Path) -> list[KeyEntry]:
    """The bridge-managed keys of an authorized_keys file (a missing file has none)."""
    entries = []
    for number, line in enumerate(_read_lines(path), start=1):
        parsed = split_line(line)
        match = _GUARD.search(parsed[0]) if parsed else None
        if parsed and match:
            entries.append(KeyEntry(match.group(1), match.group(2), parsed[1], number, parsed[0]))
    return entries


def guard_settings(entry: KeyEntry) -> GuardSettings | None:
    """The settings the entry's forced `bridge guard` command runs with, None when it has none we can read."""
    match = _COMMAND.search(entry.options)
    words = shlex.split(match.group(1)) if match else []
    start = words.index("guard") if "guard" in words else len(words)
    try:
        return GuardSettings.from_argv(words[start:])
    except ValueError:
        return None


def _read_lines(path: Path) -> list[str]:
    """The file's lines, [] when it does not exist; raises UsageError when unreadable."""
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from e


def add_key(path: Path, settings: GuardSettings, role: Role, key: PublicKey, run_as: str | None = None,
            bridge: list[str] | None = None) -> KeyEntry:
    """Grant `key` the role as `settings.user`, replacing any line with the same key; returns the new entry.

    Raises UsageError before writing anything when the line could not bind: a bad name, a file
    its login account could edit, or a role without sudo on a root login with no usable run_as.
    """
    if not _USER.match(settings.user):
        raise UsageError(f"invalid user name {settings.user!r}", hint="letters, digits, . _ @ - (up to 64)")
    check_guarded(path)
    if settings.policy:
        check_guarded(Path(settings.policy), "the policy that limits it",
                      "make the policy and the folders above it root-owned and not group/world-writable")
    login = login_account(path)
    check_run_as(login, role, run_as)
    options = key_options(settings, role, bridge or bridge_command())
    new_line = " ".join(p for p in (options, key.kind, key.blob, key.comment) if p)
    # sshd reads the file as the login account: one we do not run as must be able to read a new file
    own = login.uid == os.getuid()
    new_mode = 0o600 if own else 0o644
    path.parent.mkdir(mode=0o700 if own else 0o755, parents=True, exist_ok=True)
    with _locked(path):
        kept = [line for line in _read_lines(path) if not _same_key(line, key)]
        _atomic_write(path, kept + [new_line], new_mode)
    return KeyEntry(settings.user, role.name, key, len(kept) + 1, options)


def login_account(path: Path) -> Account:
    """The account whose logins read `path`: NAME for `/etc/bridge/authorized_keys/NAME` (sshd's `%u`),
    the owner of the home it lies in, else the account running bridge."""
    named = account_by_name(path.name)
    if named is not None:
        return named
    real = path.absolute().resolve()
    homes = [e for e in pwd.getpwall() if e.pw_dir not in ("", "/") and real.is_relative_to(e.pw_dir)]
    if homes:
        return account_by_name(max(homes, key=lambda e: len(e.pw_dir)).pw_name) or current_account()
    return current_account()


def check_run_as(login: Account, role: Role, run_as: str | None) -> None:
    """On a root login a role without sudo needs an unprivileged run_as account; raises UsageError."""
    if login.uid != 0 or role.may("sudo"):
        return
    hint = f"add `run_as: ACCOUNT` to role {role.name} (or the user) in the policy, or use an unprivileged login"
    if not run_as:
        raise UsageError(f"role {role.name} lacks sudo and this key logs in as root: its commands would run as root",
                         hint=hint)
    target = account_by_name(run_as)
    if target is None or target.uid == 0:
        raise UsageError(f"run_as account {run_as!r} is missing or is root", hint=hint)


ROOT_OWNED_KEYS_HINT = ("keep keys in a root-owned AuthorizedKeysFile: `AuthorizedKeysFile "
                        "/etc/bridge/authorized_keys/%u` in sshd_config, then --file /etc/bridge/authorized_keys/USER")


def check_guarded(path: Path, what: str = "its own key line", hint: str = ROOT_OWNED_KEYS_HINT) -> None:
    """Refuse a file that anyone but root could edit (it or a folder above it); raises UsageError.

    A forced command binds only while its account cannot rewrite its own authorized_keys (or policy).
    """
    try:
        found = editable_by_others(path)
    except OSError as e:
        raise UsageError(f"cannot check {path}: {e.strerror or e}") from e
    if found:
        raise UsageError(f"{found[0]} is writable by {found[1]}, so the account could edit {what}", hint=hint)


def remove_key(path: Path, user: str, fingerprint: str | None = None) -> list[KeyEntry]:
    """Remove the user's managed keys (only the one with `fingerprint` if given); raises UsageError if none."""
    with _locked(path):
        lines = _read_lines(path)
        gone = [e for e in list_keys(path) if e.user == user and fingerprint in (None, e.key.fingerprint)]
        if not gone:
            raise UsageError(f"no key for {user!r} in {path}", hint=f"bridge keys list --file {path}")
        drop = {e.line for e in gone}
        _atomic_write(path, [line for n, line in enumerate(lines, start=1) if n not in drop])
    return gone


def _same_key(line: str, key: PublicKey) -> bool:
    """True when the line grants the same key blob."""
    parsed = split_line(line)
    return parsed is not None and parsed[1].blob == key.blob


class _locked:
    """Holds an exclusive lock beside the file, so two `keys` commands never lose each other's edit."""

    def __init__(self, path: Path) -> None:
        self.lock_path = path.with_name(f".{path.name}.bridge-lock")
        self.fd = -1

    def __enter__(self) -> None:
        self.lock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _atomic_write(path: Path, lines: list[str], new_mode: int = 0o600) -> None:
    """Write a temp file with the old mode (`new_mode` for a new file), fsync, and rename it over `path`."""
    mode = path.stat().st_mode & 0o777 if path.exists() else new_mode
    tmp = path.with_name(f".{path.name}.bridge-tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write("".join(line + "\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)
