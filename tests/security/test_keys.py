"""`bridge keys add/list/remove` write restricted authorized_keys lines, atomically."""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Home, Result, keygen


def pub(home: Home, name: str) -> Path:
    return keygen(home.path / "keys" / name).with_suffix(".pub")


def ak_file(home: Home) -> Path:
    """The authorized_keys of the unprivileged account `nobody` in sshd's root-owned `%u` layout."""
    folder = home.path / "authorized_keys"
    folder.mkdir(mode=0o755, exist_ok=True)
    return folder / "nobody"


def test_add_writes_a_forced_restricted_line(sec: Callable[..., Result], home: Home, bridge_exe: Path) -> None:
    ak = ak_file(home)
    key = pub(home, "alice")
    result = sec("keys", "add", "alice", "--role", "operator", "--key", f"@{key}", "--file", str(ak))
    assert result.code == 0 and "alice as operator" in result.out
    kind, blob = key.read_text().split()[:2]
    line = ak.read_text().strip()
    assert line.startswith(f'command="{sys.executable} -I -S {bridge_exe} guard --as alice --role operator",'
                           f'restrict,pty {kind} {blob}')
    assert oct(ak.stat().st_mode & 0o777) == "0o644", "root-owned, readable by sshd as the account"
    mine = home.path / "authorized_keys" / "root"
    assert sec("keys", "add", "boss", "--role", "admin", "--key", f"@{key}", "--file", str(mine)).code == 0
    assert oct(mine.stat().st_mode & 0o777) == "0o600"


def test_pty_and_forwarding_follow_the_role(sec: Callable[..., Result], home: Home) -> None:
    ak = ak_file(home)
    for user, role in (("v", "viewer"), ("a", "admin")):
        sec("keys", "add", user, "--role", role, "--key", pub(home, user).read_text(), "--file", str(ak))
    viewer, admin = ak.read_text().splitlines()
    assert ",restrict " in viewer and "pty" not in viewer.split()[2]
    assert ",restrict,pty,port-forwarding " in admin


def test_same_key_is_replaced_not_duplicated(sec: Callable[..., Result], home: Home) -> None:
    ak = ak_file(home)
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
    ak = ak_file(home)
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
    ak = ak_file(home)
    key = f"@{pub(home, 'x')}"
    assert sec("keys", "add", "x", "--role", "ghost", "--key", key, "--file", str(ak)).code == 2
    assert sec("keys", "add", 'x" y', "--role", "viewer", "--key", key, "--file", str(ak)).code == 2
    assert sec("keys", "add", "x", "--role", "viewer", "--key", "ssh-ed25519 notbase64!", "--file", str(ak)).code == 2
    assert sec("keys", "add", "x", "--role", "viewer", "--key", "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIA==",
               "--file", str(ak)).code == 2
    assert not ak.exists()


def test_key_as_a_plain_path_like_ssh_copy_id(sec: Callable[..., Result], home: Home) -> None:
    ak, key = ak_file(home), pub(home, "plain")
    result = sec("keys", "add", "pat", "--role", "viewer", "--key", str(key), "--file", str(ak))
    assert result.code == 0, result
    assert key.read_text().split()[1] in ak.read_text()
    missing = sec("keys", "add", "pat", "--role", "viewer", "--key", str(home.path / "absent.pub"), "--file", str(ak))
    assert missing.code == 2 and "cannot read key file" in missing.err and missing.err.count("\n") == 2


def test_settings_go_into_the_line_for_the_guard(sec: Callable[..., Result], home: Home, tmp_path: Path) -> None:
    ak, policy = ak_file(home), tmp_path / "p.yaml"
    policy.write_text("users: {}\n")
    result = sec("keys", "add", "w", "--role", "operator", "--key", str(pub(home, "w")), "--file", str(ak),
                 "--workspace", "/srv/a", "--workspace", "/srv/b/", "--policy", str(policy),
                 "--audit", "/var/log/x/audit.jsonl")
    assert result.code == 0, result
    assert (f"guard --as w --role operator --policy {policy} --audit /var/log/x/audit.jsonl "
            "--workspace /srv/a --workspace /srv/b\"") in ak.read_text()
    relative = sec("keys", "add", "w", "--role", "operator", "--key", str(pub(home, "w")), "--file", str(ak),
                   "--workspace", "srv/a")
    assert relative.code == 2 and "--workspace 'srv/a' must be an absolute path" in relative.err


def test_a_file_the_account_could_edit_is_refused(sec: Callable[..., Result], home: Home, runner) -> None:
    key = str(pub(home, "e"))
    owned = home.path / "owned"
    owned.mkdir()
    os.chown(owned, runner.uid, runner.gid)
    shared = home.path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    for folder in (owned, shared):
        result = sec("keys", "add", "e", "--role", "viewer", "--key", key, "--file", str(folder / runner.name))
        assert result.code == 2 and "could edit its own key line" in result.err, result
        assert "AuthorizedKeysFile /etc/bridge/authorized_keys/%u" in result.err
        assert list(folder.iterdir()) == []


def test_no_sudo_role_on_a_root_login_needs_run_as(sec: Callable[..., Result], home: Home, tmp_path: Path,
                                                   runner) -> None:
    root_file, key = home.path / "authorized_keys" / "root", str(pub(home, "r"))
    root_file.parent.mkdir()
    refused = sec("keys", "add", "ops", "--role", "operator", "--key", key, "--file", str(root_file))
    assert refused.code == 2 and "would run as root" in refused.err and "run_as" in refused.err
    assert not root_file.exists()
    assert sec("keys", "add", "boss", "--role", "admin", "--key", key, "--file", str(root_file)).code == 0
    policy = tmp_path / "p.yaml"
    policy.write_text(f"users:\n  ops: {{role: operator, run_as: {runner.name}}}\n")
    ok = sec("keys", "add", "ops", "--role", "operator", "--key", key, "--file", str(root_file), "--policy", str(policy))
    assert ok.code == 0, ok


def test_the_line_s_settings_read_back_as_the_guard_gets_them(sec: Callable[..., Result], home: Home) -> None:
    from bridge.security.guard import GuardSettings
    from bridge.security.keys import guard_settings, list_keys

    ak = ak_file(home)
    assert sec("keys", "add", "rt", "--role", "admin", "--key", str(pub(home, "rt")), "--file", str(ak),
               "--workspace", "/srv/a b", "--audit", "/var/log/x.jsonl", "--record-input").code == 0
    [entry] = list_keys(ak)
    assert guard_settings(entry) == GuardSettings("rt", "admin", None, "/var/log/x.jsonl", ("/srv/a b",), True)
    assert GuardSettings.from_argv(guard_settings(entry).argv()) == guard_settings(entry)


def test_a_policy_the_account_could_edit_is_refused(sec: Callable[..., Result], home: Home, tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("users: {}\n")
    policy.chmod(0o666)
    result = sec("keys", "add", "p", "--role", "viewer", "--key", str(pub(home, "p")), "--file", str(ak_file(home)),
                 "--policy", str(policy))
    assert result.code == 2 and "could edit the policy that limits it" in result.err
    assert not ak_file(home).exists()
