"""known_hosts: the one place bridge decides whether a server is who it says it is.

Unknown keys are refused with the fingerprint and the command that trusts them; a key
that differs from a known one is refused always, naming the known_hosts line.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path
from typing import NamedTuple

from bridge import paths
from bridge.errors import ChangedHostKey, UnknownHostKey

SYSTEM_KNOWN_HOSTS = Path("/etc/ssh/ssh_known_hosts")


class KnownKey(NamedTuple):
    """One key line of a known_hosts file that matches a host."""

    path: Path
    line: int
    key_type: str
    key_b64: str


def fingerprint(key_blob: bytes) -> str:
    """OpenSSH's `SHA256:…` fingerprint of a public key blob."""
    digest = hashlib.sha256(key_blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def user_known_hosts() -> Path:
    return paths.ssh_dir() / "known_hosts"


def known_keys(name: str) -> list[KnownKey]:
    """Every key filed under `name` (`host` or `[host]:port`), hashed entries included."""
    found: list[KnownKey] = []
    for path in (user_known_hosts(), SYSTEM_KNOWN_HOSTS):
        found.extend(_scan(path, name))
    return found


def _scan(path: Path, name: str) -> list[KnownKey]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    found = []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if len(fields) < 3 or fields[0].startswith("#") or fields[0].startswith("@revoked"):
            continue
        if fields[0].startswith("@cert-authority"):
            continue
        if _matches(fields[0], name):
            found.append(KnownKey(path, number, fields[1], fields[2]))
    return found


def _matches(patterns: str, name: str) -> bool:
    """Match a known_hosts host field: comma list, hashed `|1|salt|hash`, or plain names."""
    if patterns.startswith("|1|"):
        try:
            _, _, salt_b64, hash_b64 = patterns.split("|")
            salt = base64.b64decode(salt_b64)
            digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
            return hmac.compare_digest(digest, base64.b64decode(hash_b64))
        except (ValueError, TypeError):
            return False
    return name in patterns.split(",")


def preferred_key_types(name: str) -> list[str]:
    """Key types already known for this host, so the server is asked for one we can check."""
    return list(dict.fromkeys(k.key_type for k in known_keys(name)))


def verify(name: str, key_type: str, key_blob: bytes, trust_hint: str) -> None:
    """Accept the server's key only if known_hosts has exactly this key for `name`.

    Raises UnknownHostKey (with fingerprint and `trust_hint`) or ChangedHostKey (always refused).
    """
    offered = base64.b64encode(key_blob).decode()
    keys = known_keys(name)
    if any(k.key_type == key_type and k.key_b64 == offered for k in keys):
        return
    fp = fingerprint(key_blob)
    same_type = [k for k in keys if k.key_type == key_type] or keys
    if same_type:
        known = same_type[0]
        raise ChangedHostKey(
            f"host key for {name} CHANGED: the server offers {key_type} {fp}, "
            f"but {known.path}:{known.line} holds a different key — refusing (possible man-in-the-middle)",
            hint=f"if the server was really re-keyed, remove line {known.line} of {known.path} "
                 f"(ssh-keygen -R '{name}') and trust it again")
    raise UnknownHostKey(f"host key for {name} is unknown: {key_type} {fp}",
                       hint=f"check the fingerprint with the server's admin, then run `{trust_hint}`")


def trust(name: str, key_type: str, key_blob: bytes) -> Path:
    """Append the key to ~/.ssh/known_hosts (0600) and return the file's path."""
    path = user_known_hosts()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    line = f"{name} {key_type} {base64.b64encode(key_blob).decode()}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as f:
        if f.tell() > 0 and not path.read_bytes().endswith(b"\n"):
            f.write("\n")
        f.write(line)
    return path
