"""Real OpenSSH sshd instances on 127.0.0.1 with throwaway keys: shared by tests and bench.

Every process started here is stopped by its PID; nothing else on the machine is touched.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
_OVERRIDABLE = {"maxstartups", "maxsessions", "loglevel"}



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
    binary: str = SSHD  # PAM names its service after this file's name
    use_pam: bool = False
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
            "KbdInteractiveAuthentication no", f"UsePAM {'yes' if self.use_pam else 'no'}", "StrictModes no",
            "Subsystem sftp internal-sftp", "AllowTcpForwarding yes", "AllowStreamLocalForwarding yes",
            "MaxStartups 200", "MaxSessions 200", "LogLevel VERBOSE", "PrintMotd no",
        ]
        # sshd takes the first value of a keyword: an extra line for one of these replaces our default
        overridden = {line.split()[0].lower() for line in self.extra_config if line.split()} & _OVERRIDABLE
        lines = [line for line in lines if line.split()[0].lower() not in overridden] + self.extra_config
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self) -> "SSHServer":
        if self.proc and self.proc.poll() is None:
            return self
        Path("/run/sshd").mkdir(exist_ok=True)
        config = self.write_config()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([self.binary, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
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
