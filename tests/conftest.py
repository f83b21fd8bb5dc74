"""Test fixtures: an isolated HOME, real sshd servers (tests/sshd.py), and the real `bridge` main()."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.accounts import Account
from tests.sshd import SSHServer, free_port, keygen, wait_port  # noqa: F401 - re-exported for tests

REPO = Path(__file__).resolve().parent.parent
# The installed command's Python half, as bin/bridge's sh half starts it: -S, no site .pth hooks
BRIDGE = [sys.executable, "-S", str(REPO / "bin" / "bridge")]


@dataclass
class Home:
    """An isolated HOME with XDG dirs, ~/.ssh and a client key; `env` is what bridge subprocesses get."""

    path: Path
    env: dict[str, str]

    @property
    def ssh(self) -> Path:
        return self.path / ".ssh"

    @property
    def key(self) -> Path:
        return self.ssh / "id_ed25519"

    def trust(self, server: SSHServer) -> None:
        with (self.ssh / "known_hosts").open("a") as f:
            f.write(server.known_hosts_line())


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Home]:
    """HOME, XDG dirs and ~/.ssh of a fresh user, so the developer's own setup never leaks in.

    A `bridge exec` in the test may leave a connection keeper in this home's runtime dir; it is
    stopped afterwards by the PID in its lock file, so none outlives its test.
    """
    root = tmp_path / "home"
    ssh = root / ".ssh"
    ssh.mkdir(parents=True, mode=0o700)
    keygen(ssh / "id_ed25519")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSH_", "BRIDGE_", "XDG_", "GIT_"))}
    env.update({
        "HOME": str(root), "XDG_CONFIG_HOME": str(root / ".config"), "XDG_STATE_HOME": str(root / ".local/state"),
        "XDG_DATA_HOME": str(root / ".local/share"), "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "PYTHONPATH": str(REPO), "COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1",
    })
    (tmp_path / "run").mkdir(mode=0o700)
    for key in [k for k in os.environ if k.startswith(("SSH_", "BRIDGE_", "XDG_", "GIT_"))]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield Home(root, env)
    for lock in (tmp_path / "run" / "bridge").glob("keeper-*.lock"):  # one keeper per identity a test used
        pid = keeper_pid(lock)
        try:
            if pid:
                os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def keeper_lock(runtime: Path) -> Path:
    """The lock file of the keeper this test's environment starts in `runtime` (named by its identity)."""
    from bridge.ssh import keeper

    return runtime / f"{keeper.instance_name()}.lock"


def keeper_socket(runtime: Path) -> Path:
    """That keeper's socket."""
    return keeper_lock(runtime).with_suffix(".sock")


def keeper_pid(lock: Path) -> int | None:
    """The PID a connection keeper wrote into its lock file, if one ran."""
    try:
        return int(lock.read_text() or 0) or None
    except (OSError, ValueError):
        return None


@pytest.fixture
def sshd_factory(home: Home, tmp_path: Path) -> Iterator[Callable[..., SSHServer]]:
    """Start real sshd instances; each trusts the home's key and is trusted by it unless told otherwise."""
    servers: list[SSHServer] = []

    def make(trusted: bool = True, authorize: bool = True, extra_config: list[str] | None = None) -> SSHServer:
        folder = tmp_path / f"sshd{len(servers)}"
        folder.mkdir()
        server = SSHServer(folder, free_port(), home.key, list(extra_config or []))
        keygen(server.host_key)
        server.authorized_keys.write_text(home.key.with_suffix(".pub").read_text() if authorize else "")
        servers.append(server)
        server.start()
        if trusted:
            home.trust(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def sshd(sshd_factory: Callable[..., SSHServer]) -> SSHServer:
    """One trusted sshd that accepts the home's key."""
    return sshd_factory()


@dataclass
class Result:
    """A finished `bridge` process: exit code and the exact bytes it printed."""

    code: int
    out: str
    err: str
    stdout: bytes
    stderr: bytes

    def __repr__(self) -> str:
        return f"Result(code={self.code}, out={self.out[-800:]!r}, err={self.err[-800:]!r})"


@pytest.fixture
def bridge(home: Home) -> Callable[..., Result]:
    """Run the real `bridge` (bin/bridge) in a subprocess with the isolated home; asserts no traceback leaked."""

    def run(*args: str, cwd: Path | None = None, input: bytes | str | None = None, env: dict | None = None,
            timeout: float = 120) -> Result:
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run([*BRIDGE, *args], cwd=cwd, input=data,
                              capture_output=True, env={**home.env, **(env or {})}, timeout=timeout)
        result = Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"),
                        proc.stdout, proc.stderr)
        assert "Traceback (most recent call last)" not in result.err, result
        return result

    return run


@pytest.fixture
def workspace(tmp_path: Path, home: Home) -> Path:
    """An empty folder to be a workspace (bridge init makes it a git repo)."""
    folder = tmp_path / "ws"
    folder.mkdir()
    return folder


def write_config(folder: Path, text: str) -> Path:
    """Write bridge.yaml in `folder`."""
    path = folder / "bridge.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def system_bridge() -> Path:
    """bridge installed in a venv of Debian's python3 that any account can run: its `bin/bridge`."""
    from tests.accounts import system_venv

    return system_venv(REPO) / "bin" / "bridge"


@pytest.fixture
def sudo_account() -> Iterator[Account]:
    """A fresh non-root login account that sudoers grants `NOPASSWD: ALL`; removed afterwards."""
    from tests.accounts import make_account

    account = make_account(sudo_all=True)
    yield account
    account.remove()
