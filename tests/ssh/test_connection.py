"""The SSH layer against real sshd: URL, alias, jump host, and every host-key and auth refusal."""
from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import keygen, write_config


def _init(workspace: Path, url: str, extra: str = "") -> None:
    write_config(workspace, f"workspace: w\nremotes:\n  prod: {{url: \"{url}\"{extra}}}\n")


def test_connect_by_url_runs_every_check(bridge, sshd, workspace) -> None:
    _init(workspace, sshd.url("/tmp"))
    result = bridge("test", "--json", cwd=workspace)
    assert result.code == 0, result
    assert '"name": "host key",\n        "ok": true' in result.out
    for name in ("reachable", "auth", "git", "python3", "disk free", "latency"):
        assert f'"name": "{name}"' in result.out


def test_connect_by_ssh_config_alias(bridge, sshd, workspace, home) -> None:
    (home.ssh / "config").write_text(
        f"Host myserver\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User root\n  IdentityFile {home.key}\n")
    _init(workspace, "myserver:/tmp")
    result = bridge("test", "prod", cwd=workspace)
    assert result.code == 0, result
    assert f"root@myserver:{sshd.port}" in result.out


def test_connect_through_a_jump_host(bridge, sshd_factory, workspace) -> None:
    jump, target = sshd_factory(), sshd_factory()
    write_config(workspace, f"workspace: w\nremotes:\n  jump: {jump.url()}\n"
                            f"  prod: {{url: \"{target.url('/tmp')}\", via: jump}}\n")
    result = bridge("test", "prod", cwd=workspace)
    assert result.code == 0, result
    assert (jump.accepted_connections(), target.accepted_connections()) == (1, 1)


def test_unknown_host_key_refused_then_trusted(bridge, sshd_factory, workspace, home) -> None:
    server = sshd_factory(trusted=False)
    _init(workspace, server.url("/tmp"))
    fingerprint = bridge_fingerprint(server)
    refused = bridge("test", cwd=workspace)
    assert refused.code == 255
    assert "unknown" in refused.out and fingerprint in refused.out
    assert "bridge test --trust prod" in refused.out
    trusted = bridge("test", "--trust", cwd=workspace)
    assert trusted.code == 0, trusted
    assert fingerprint in trusted.out
    assert f"[127.0.0.1]:{server.port}" in (home.ssh / "known_hosts").read_text()


def test_changed_host_key_refused_and_known_hosts_untouched(bridge, sshd, workspace, home) -> None:
    _init(workspace, sshd.url("/tmp"))
    sshd.restart(new_host_key=True)
    known = (home.ssh / "known_hosts").read_bytes()
    for args in (["test"], ["test", "--trust"]):
        result = bridge(*args, cwd=workspace)
        assert result.code == 255
        assert "CHANGED" in result.out and "known_hosts:1" in result.out
    assert (home.ssh / "known_hosts").read_bytes() == known


def test_wrong_key_is_refused_with_a_hint(bridge, sshd, workspace, tmp_path) -> None:
    other = keygen(tmp_path / "other_key")
    _init(workspace, sshd.url("/tmp"), f", identity: \"{other}\"")
    result = bridge("test", "--json", cwd=workspace)
    assert result.code == 255
    assert "permission denied" in result.out and "identity" in result.out


def test_closed_port_fails_within_seconds(bridge, sshd, workspace) -> None:
    _init(workspace, sshd.url("/tmp"))
    sshd.stop()
    start = time.monotonic()
    result = bridge("test", cwd=workspace)
    assert result.code == 255
    assert "connection refused" in result.out.lower()
    assert time.monotonic() - start < 30  # a bound on hanging, not a benchmark


def test_broken_yaml_exits_2_with_file_and_line(bridge, workspace) -> None:
    path = write_config(workspace, "workspace: w\nremotes:\n  prod: {url: \"ssh://h/p\"\n  other: x\n")
    result = bridge("remote", "list", cwd=workspace)
    assert result.code == 2
    assert f"{path}:" in result.err and "invalid YAML" in result.err
    assert result.err.count("\n") <= 2


def bridge_fingerprint(server) -> str:
    import subprocess

    out = subprocess.run(["ssh-keygen", "-lf", str(server.host_key.with_suffix(".pub"))],
                         capture_output=True, text=True, check=True).stdout
    return out.split()[1]


# -- the TCP connection is opened before paramiko is imported: every check must stay the same -------------

def test_exec_refuses_a_changed_host_key(bridge, sshd, workspace) -> None:
    _init(workspace, sshd.url("/tmp"))
    assert bridge("exec", "--no-reuse", "--", "true", cwd=workspace).code == 0
    sshd.restart(new_host_key=True)
    result = bridge("exec", "--no-reuse", "--", "true", cwd=workspace)
    assert result.code == 255
    assert "CHANGED" in result.err and "known_hosts:1" in result.err
    assert sshd.accepted_connections() == 1


def test_exec_on_a_closed_port_fails_fast_with_the_same_message(bridge, sshd, workspace) -> None:
    _init(workspace, sshd.url("/tmp"))
    sshd.stop()
    start = time.monotonic()
    result = bridge("exec", "--no-reuse", "--", "true", cwd=workspace)
    assert result.code == 255
    assert f"bridge: error: cannot connect to root@127.0.0.1:{sshd.port}: Connection refused\n" in result.err
    assert time.monotonic() - start < 30  # a bound on hanging, not a benchmark


def test_exec_through_a_jump_host(bridge, sshd_factory, workspace) -> None:
    jump, target = sshd_factory(), sshd_factory()
    write_config(workspace, f"workspace: w\nremotes:\n  jump: {jump.url()}\n"
                            f"  prod: {{url: \"{target.url('/tmp')}\", via: jump}}\ndefault: prod\n")
    result = bridge("exec", "--no-reuse", "--", "sh", "-c", "echo $SSH_CONNECTION", cwd=workspace)
    assert result.code == 0, result
    assert result.out.startswith("127.0.0.1 ") and result.out.split()[3] == str(target.port)
    assert (jump.accepted_connections(), target.accepted_connections()) == (1, 1)
