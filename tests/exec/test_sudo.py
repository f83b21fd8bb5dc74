"""--sudo with a real password prompt: a throwaway user whose sudo asks for a password (made idempotently).

The password is typed into the PTY when sudo shows bridge's marker; it must never show up in output.
"""
from __future__ import annotations

import pwd
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.fleet_probe import probe  # noqa: F401 - fixture

USER = "bridgesudo"


@pytest.fixture
def sudo_user(home) -> str:
    """A /bin/sh user with a fresh password and a sudo rule that asks for it, authorized for home's key."""
    if not shutil.which("sudo") or not shutil.which("useradd"):
        pytest.skip("needs sudo and useradd")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", USER], check=True)
    password = secrets.token_urlsafe(12)
    subprocess.run(["chpasswd"], input=f"{USER}:{password}\n", text=True, check=True)
    rule = Path(f"/etc/sudoers.d/{USER}")
    rule.write_text(f"Defaults:{USER} timestamp_timeout=0, !lecture\n{USER} ALL=(ALL) ALL\n")
    rule.chmod(0o440)
    ssh = Path(f"/home/{USER}/.ssh")
    ssh.mkdir(exist_ok=True)
    (ssh / "authorized_keys").write_text(home.key.with_suffix(".pub").read_text())
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(ssh)], check=True)
    return password


@pytest.fixture
def sudo_ws(sshd_factory, workspace, sudo_user):
    server = sshd_factory(extra_config=["Match User " + USER, f"  AuthorizedKeysFile /home/{USER}/.ssh/authorized_keys"])
    write_config(workspace, f"workspace: w\nremotes:\n  box: {{url: \"ssh://{USER}@127.0.0.1:{server.port}\"}}\n"
                            f"  box2: {{url: \"ssh://{USER}@127.0.0.1:{server.port}/tmp\"}}\n")
    return workspace


def test_password_is_typed_at_the_prompt_and_never_shown(bridge, sudo_ws, sudo_user) -> None:
    result = bridge("exec", "box", "--sudo", "--", "id", "-u", cwd=sudo_ws, env={"BRIDGE_SUDO_PASSWORD": sudo_user})
    assert result.code == 0, result
    assert result.out == "0\n"
    assert sudo_user not in result.out + result.err and "[bridge-sudo]" not in result.out


def test_fleet_sudo_answers_every_host(bridge, sudo_ws, sudo_user) -> None:
    result = bridge("exec", "--on", "box,box2", "--sudo", "--", "id", "-u", cwd=sudo_ws,
                    env={"BRIDGE_SUDO_PASSWORD": sudo_user})
    assert result.code == 0, result
    assert sorted(result.out.split()) == ["0", "0", "box", "box2", "|", "|"]
    assert sudo_user not in result.out + result.err


def test_wrong_password_fails_without_looping(bridge, sudo_ws) -> None:
    result = bridge("exec", "box", "--sudo", "--", "id", "-u", cwd=sudo_ws, env={"BRIDGE_SUDO_PASSWORD": "wrong"})
    assert result.code == 1
    assert "sudo refused the password" in result.err


def test_fleet_sudo_honours_forks(bridge, sshd_factory, workspace, sudo_user, probe) -> None:
    server = sshd_factory(extra_config=[*probe.sshd_config, "Match User " + USER,
                                        f"  AuthorizedKeysFile /home/{USER}/.ssh/authorized_keys"])
    write_config(workspace, "workspace: w\nremotes:\n" + "".join(
        f"  b{i}: {{url: \"ssh://{USER}@127.0.0.1:{server.port}/tmp\"}}\n" for i in range(3)))
    result = bridge("exec", "--on", "b0,b1,b2", "--sudo", "--forks", "1", "--", "id", "-u", cwd=workspace,
                    env={"BRIDGE_SUDO_PASSWORD": sudo_user})
    assert result.code == 0, result
    assert sorted(result.out.split()) == ["0", "0", "0", "b0", "b1", "b2", "|", "|", "|"]
    seen = probe.seen()
    assert len(seen) >= 3 and max(seen) == 1, seen  # one host's PTY session at a time


def test_fleet_sudo_gives_an_unreachable_host_the_fleet_row(bridge, sshd_factory, sudo_ws, sudo_user) -> None:
    down = sshd_factory()
    down.stop()
    config = (sudo_ws / "bridge.yaml").read_text() + f"  down: {{url: \"ssh://{USER}@127.0.0.1:{down.port}\"}}\n"
    write_config(sudo_ws, config)
    result = bridge("exec", "--on", "box,down", "--sudo", "--", "id", "-u", cwd=sudo_ws,
                    env={"BRIDGE_SUDO_PASSWORD": sudo_user})
    assert result.code == 255, result
    row = next(line.split() for line in result.err.splitlines() if line.startswith("down "))
    assert row[1:3] == ["255", "unreachable"] and "cannot connect" in " ".join(row), result.err
    assert result.out.split() == ["box", "|", "0"]
