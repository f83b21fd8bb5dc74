"""Test harness: real OpenSSH sshd instances on 127.0.0.1 with throwaway keys, an isolated HOME.

Every process started here is stopped by its PID; nothing else on the machine is touched.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, kind: str = "ed25519") -> Path:
    """A new passphrase-less key pair at `path` / `path.pub`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for p in (path, path.with_suffix(".pub")):
        p.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "bridge-test", "-f", str(path)], check=True)
    return path


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class SSHServer:
    """One real sshd on 127.0.0.1:port, stoppable and restartable, with its own host key and authorized_keys."""

    dir: Path
    port: int
    client_key: Path
    extra_config: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    host = "127.0.0.1"
    user = "root"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def authorized_keys(self) -> Path:
        return self.dir / "authorized_keys"

    @property
    def log(self) -> Path:
        return self.dir / "sshd.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def url(self, path: str = "") -> str:
        return f"ssh://{self.user}@{self.host}:{self.port}{path}"

    def known_hosts_line(self) -> str:
        kind, blob = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"[{self.host}]:{self.port} {kind} {blob}\n"

    def write_config(self) -> Path:
        config = self.dir / "sshd_config"
        lines = [
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.host_key}",
            f"PidFile {self.dir / 'sshd.pid'}", f"AuthorizedKeysFile {self.authorized_keys}",
            "PermitRootLogin prohibit-password", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
            "Subsystem sftp internal-sftp", "AllowTcpForwarding yes", "AllowStreamLocalForwarding yes",
            "MaxStartups 200", "MaxSessions 200", "LogLevel VERBOSE", "PrintMotd no",
            *self.extra_config,
        ]
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self) -> "SSHServer":
        if self.proc and self.proc.poll() is None:
            return self
        Path("/run/sshd").mkdir(exist_ok=True)
        config = self.write_config()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        """Stop this sshd (by its PID) and the sessions it forked, which share its process group."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, new_host_key: bool = False) -> "SSHServer":
        self.stop()
        if new_host_key:
            keygen(self.host_key)
        return self.start()

    def accepted_connections(self) -> int:
        """How many connections this sshd has authenticated, from its own log: proof of reuse or not."""
        return self.log.read_text(errors="replace").count("Accepted publickey for ")


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
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    """HOME, XDG dirs and ~/.ssh of a fresh user, so the developer's own setup never leaks in."""
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
    return Home(root, env)


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
    """Run the real `bridge` main() in a subprocess with the isolated home; asserts no traceback leaked."""

    def run(*args: str, cwd: Path | None = None, input: bytes | str | None = None, env: dict | None = None,
            timeout: float = 120) -> Result:
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run([sys.executable, "-m", "bridge", *args], cwd=cwd, input=data,
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
