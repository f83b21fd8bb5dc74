"""Real non-root login accounts for tests, and bridge installed where such an account can run it.

The machine's default python3 lives in root's home, which other accounts cannot enter, so an
account that runs bridge (the guard as its forced command, say) gets it from a venv of Debian's
/usr/bin/python3 in a world-readable folder, installed from this checkout (not editable: the
checkout may sit in a folder the account cannot read). Everything made here is removed by the
code that made it: accounts by name, sudoers drop-ins by path.
"""
from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
VENV_ROOT = Path("/var/tmp")


def system_venv(repo: Path) -> Path:
    """A venv of /usr/bin/python3 with this checkout's bridge installed; its deps are kept across runs.

    One venv per checkout (keyed by its path), so test runs in two worktrees never share one;
    bridge itself is reinstalled on each call so the venv runs the code under test.
    """
    venv = VENV_ROOT / f"bridge-test-venv-{hashlib.sha1(str(repo).encode()).hexdigest()[:10]}"
    python = venv / "bin" / "python3"
    if not python.exists():
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    marker = venv / ".deps-installed"
    if not marker.exists():
        subprocess.run([*pip, str(repo)], check=True)
        marker.write_text("ok\n")
    subprocess.run([*pip, "--no-deps", "--force-reinstall", str(repo)], check=True, cwd="/")
    venv.chmod(0o755)
    return venv


@dataclass
class Account:
    """A real, unlocked login account with its own home; `sudoers` says whether sudo grants it root."""

    name: str
    home: Path
    sudoers: Path | None = None

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.name).pw_uid

    @property
    def gid(self) -> int:
        return pwd.getpwnam(self.name).pw_gid

    @property
    def authorized_keys(self) -> Path:
        return self.home / ".ssh" / "authorized_keys"

    def sshd_config(self) -> list[str]:
        """sshd_config lines (for SSHServer's extra_config) that read this account's own authorized_keys.

        sshd reads authorized_keys as the account, so the test server's file in root's 0700 tmp
        folder cannot serve it.
        """
        return [f"Match User {self.name}", f"    AuthorizedKeysFile {self.authorized_keys}"]

    def authorize(self, line: str) -> None:
        """Write one authorized_keys line for this account, owned by it, 0600."""
        self.authorized_keys.parent.mkdir(mode=0o700, exist_ok=True)
        self.authorized_keys.write_text(line if line.endswith("\n") else line + "\n")
        for path in (self.authorized_keys.parent, self.authorized_keys):
            os.chown(path, self.uid, self.gid)
        self.authorized_keys.chmod(0o600)

    def remove(self) -> None:
        """Delete the account, its home and its sudoers drop-in (by the names made here only)."""
        if self.sudoers is not None:
            self.sudoers.unlink(missing_ok=True)
        subprocess.run(["userdel", "-r", "-f", self.name], capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)


def make_account(prefix: str = "bt", sudo_all: bool = False) -> Account:
    """Create an account `<prefix><random>`, unlocked for key logins; `sudo_all` grants NOPASSWD: ALL.

    useradd makes a locked account, which sshd without PAM refuses: `usermod -p '*'` unlocks it
    for keys while no password can ever match.
    """
    name = f"{prefix}{secrets.token_hex(3)}"
    home = Path("/home") / name
    subprocess.run(["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/sh", name],
                   check=True, capture_output=True)
    subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)
    account = Account(name, home)
    if sudo_all:
        account.sudoers = Path("/etc/sudoers.d") / f"bridge-test-{name}"
        account.sudoers.write_text(f"{name} ALL=(ALL) NOPASSWD: ALL\n")
        account.sudoers.chmod(0o440)
    return account
