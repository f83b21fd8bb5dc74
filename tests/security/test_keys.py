"""`bridge keys add/list/remove` write restricted authorized_keys lines, atomically."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Home, Result, keygen


def pub(home: Home, name: str) -> Path:
    return keygen(home.path / "keys" / name).with_suffix(".pub")


def test_add_writes_a_forced_restricted_line(sec: Callable[..., Result], home: Home, bridge_exe: Path) -> None:
    ak = home.path / "ak"
    key = pub(home, "alice")
    result = sec("keys", "add", "alice", "--role", "operator", "--key", f"@{key}", "--file", str(ak))
    assert result.code == 0 and "alice as operator" in result.out
    kind, blob = key.read_text().split()[:2]
    line = ak.read_text().strip()
    assert line.startswith(f'command="{bridge_exe} guard --as alice --role operator",restrict,pty {kind} {blob}')
    assert oct(ak.stat().st_mode & 0o777) == "0o600"


def test_pty_and_forwarding_follow_the_role(sec: Callable[..., Result], home: Home) -> None:
    ak = home.path / "ak"
    for user, role in (("v", "viewer"), ("a", "admin")):
        sec("keys", "add", user, "--role", role, "--key", pub(home, user).read_text(), "--file", str(ak))
    viewer, admin = ak.read_text().splitlines()
    assert ",restrict " in viewer and "pty" not in viewer.split()[2]
    assert ",restrict,pty,port-forwarding " in admin


def test_same_key_is_replaced_not_duplicated(sec: Callable[..., Result], home: Home) -> None:
    ak = home.path / "ak"
    key = pub(home, "k")
    other = pub(home, "o").read_text()
    ak.write_text(f"# comment kept\n{key.read_text()}{other}")
    sec("keys", "add", "bob", "--role", "viewer", "--key", f"@{key}", "--file", str(ak))
    lines = ak.read_text().splitlines()
    assert lines[:2] == ["# comment kept", other.strip()]
    assert len(lines) == 3 and "--as bob --role viewer" in lines[2]
    sec("keys", "add", "bob", "--role", "admin", "--key", f"@{key}", "--file", str(ak))
    assert len(ak.read_text().splitlines()) == 3 and "--role admin" in ak.read_text()


def test_list_and_remove(sec: Callable[..., Result], home: Home) -> None:
    ak = home.path / "ak"
    sec("keys", "add", "alice", "--role", "operator", "--key", f"@{pub(home, 'a1')}", "--file", str(ak))
    sec("keys", "add", "alice", "--role", "operator", "--key", f"@{pub(home, 'a2')}", "--file", str(ak))
    sec("keys", "add", "bob", "--role", "viewer", "--key", f"@{pub(home, 'b')}", "--file", str(ak))
    rows = json.loads(sec("keys", "list", "--file", str(ak), "--json").out)
    assert [(r["user"], r["role"]) for r in rows] == [("alice", "operator")] * 2 + [("bob", "viewer")]
    assert all(r["fingerprint"].startswith("SHA256:") for r in rows)
    gone = sec("keys", "remove", "alice", "--file", str(ak), "--fingerprint", rows[0]["fingerprint"])
    assert gone.code == 0 and rows[0]["fingerprint"] in gone.out
    assert [r["user"] for r in json.loads(sec("keys", "list", "--file", str(ak), "--json").out)] == ["alice", "bob"]
    assert sec("keys", "remove", "alice", "--file", str(ak)).code == 0
    missing = sec("keys", "remove", "alice", "--file", str(ak))
    assert missing.code == 2 and "no key for 'alice'" in missing.err
    assert "bob" in sec("keys", "list", "--file", str(ak)).out


def test_bad_input_is_refused(sec: Callable[..., Result], home: Home) -> None:
    ak = home.path / "ak"
    key = f"@{pub(home, 'x')}"
    assert sec("keys", "add", "x", "--role", "ghost", "--key", key, "--file", str(ak)).code == 2
    assert sec("keys", "add", 'x" y', "--role", "viewer", "--key", key, "--file", str(ak)).code == 2
    assert sec("keys", "add", "x", "--role", "viewer", "--key", "ssh-ed25519 notbase64!", "--file", str(ak)).code == 2
    assert sec("keys", "add", "x", "--role", "viewer", "--key", "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIA==",
               "--file", str(ak)).code == 2
    assert not ak.exists()
