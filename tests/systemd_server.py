"""A real "server" for tests: a Docker container with systemd as PID 1 and OpenSSH inside.

The image is built locally (scripts/build-image.sh, cached by tag). The container runs without
--privileged (refused on this machine): SYS_ADMIN, no seccomp/apparmor profile, the host's cgroup
tree and tmpfs /run are what systemd needs. sshd gets a host key made here, so the test's
known_hosts can trust it; the container is removed by its id, never by a name pattern.
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.sshd import keygen

REPO = Path(__file__).resolve().parent.parent
BASE_IMAGE = "bridge-systemd:bookworm"
# Layered packages: node/npm/yarn/pnpm for the dependency tests, nginx for the zero-downtime `web` front;
# the tag names the list, so a changed list builds a new image once.
LAYERED = ("nodejs", "npm", "nginx-light")  # npm fails to configure inside debootstrap: apt installs them in a container
# The dependency tools a deploy may need beyond Debian's: yarn and pnpm from npm, uv from PyPI (in a venv:
# Debian's pip refuses the system site). Fetched through this machine's CA bundle, mounted read-only.
TOOLS = ("npm install -g --no-audit --no-fund yarn@1 pnpm@9 && python3 -m venv /opt/uv && "
         "PIP_CERT=/etc/ssl/certs/ca-certificates.crt /opt/uv/bin/pip install -q uv && ln -s /opt/uv/bin/uv /usr/local/bin/uv")
IMAGE = "bridge-systemd-apps-%s:bookworm" % hashlib.sha256(" ".join((*LAYERED, TOOLS)).encode()).hexdigest()[:8]
PACKAGES = ("systemd,systemd-sysv,dbus,dbus-user-session,libpam-systemd,openssh-server,git,python3,python3-venv,"
            "procps,ca-certificates,curl,sudo")
APP_USER = "app"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def build_image(tag: str = IMAGE) -> str:
    """Build (once per tag) the systemd+sshd image with node and npm; returns its tag."""
    subprocess.run(["sh", str(REPO / "scripts" / "build-image.sh"), BASE_IMAGE, PACKAGES], check=True,
                   stdout=subprocess.DEVNULL)
    if docker("image", "inspect", tag, check=False).returncode == 0:
        return tag
    cid = docker("run", "-d", "-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro", BASE_IMAGE, "sleep", "900").stdout.decode().strip()
    try:
        docker("exec", "-e", "DEBIAN_FRONTEND=noninteractive", cid, "sh", "-c",
               'apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" && rm -rf /var/lib/apt/lists/*',
               "sh", *LAYERED)
        docker("exec", cid, "sh", "-c", TOOLS + " && rm -rf /root/.npm /root/.cache")
        docker("commit", cid, tag)
    finally:
        docker("rm", "-f", cid, check=False)
    return tag


def docker(*args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], input=input, capture_output=True, check=check)


@dataclass
class SystemdServer:
    """One running container: its id, IP, sshd host key, and a non-root account with lingering."""

    id: str
    ip: str
    host_key: Path

    def sh(self, script: str, *args: str, user: str = "root", check: bool = True) -> str:
        """Run a sh script in the container (args as $1..., never formatted into it); its stdout."""
        env = [] if user == "root" else ["-e", f"XDG_RUNTIME_DIR=/run/user/{self.uid(user)}"]
        proc = docker("exec", "-u", user, *env, self.id, "sh", "-c", script, "sh", *args, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"container sh failed ({proc.returncode}): {script}\n{proc.stderr.decode()}")
        return proc.stdout.decode()

    def uid(self, user: str) -> int:
        return 0 if user == "root" else int(docker("exec", self.id, "id", "-u", user).stdout)

    def known_hosts_line(self) -> str:
        kind, blob = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"{self.ip} {kind} {blob}\n"

    def url(self, user: str, path: str) -> str:
        return f"ssh://{user}@{self.ip}{path}"

    def authorize(self, public_key: str) -> None:
        """Let `public_key` log in as root and as the app account."""
        for user, home in (("root", "/root"), (APP_USER, f"/home/{APP_USER}")):
            self.sh('mkdir -p "$1/.ssh" && printf "%s\\n" "$2" >> "$1/.ssh/authorized_keys" && '
                    'chown -R "$3" "$1/.ssh" && chmod 700 "$1/.ssh" && chmod 600 "$1/.ssh/authorized_keys"',
                    home, public_key.strip(), user)

    def stop(self) -> None:
        docker("rm", "-f", self.id, check=False)


def start_server(workdir: Path, image: str = IMAGE) -> SystemdServer:
    """Run a systemd container, give its sshd our host key, add the lingering app account."""
    name = f"bridge-test-systemd-{os.getpid()}-{secrets.token_hex(3)}"
    cid = docker("run", "-d", "--name", name, "--cap-add", "SYS_ADMIN",
                 "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
                 "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock",
                 "-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro", image, "/lib/systemd/systemd").stdout.decode().strip()
    host_key = keygen(workdir / "ssh_host_ed25519_key")
    server = SystemdServer(cid, "", host_key)
    try:
        server.ip = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", cid).stdout.decode().strip()
        _wait_booted(server)
        _configure(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_booted(server: SystemdServer, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = server.sh("systemctl is-system-running || true").strip()
        if state in ("running", "degraded"):
            return
        time.sleep(0.3)
    raise AssertionError(f"systemd in {server.id[:12]} did not finish booting: {state}")


def _configure(server: SystemdServer) -> None:
    """Our host key for sshd; pip trusting this machine's CA bundle; the app account with lingering."""
    for suffix in ("", ".pub"):
        path = server.host_key.with_name(server.host_key.name + suffix)
        docker("cp", str(path), f"{server.id}:/etc/ssh/ssh_host_ed25519_key{suffix}")
    server.sh("chmod 600 /etc/ssh/ssh_host_ed25519_key && chown root:root /etc/ssh/ssh_host_ed25519_key* && "
              "rm -f /etc/ssh/ssh_host_rsa_key* /etc/ssh/ssh_host_ecdsa_key* && systemctl restart ssh")
    server.sh('printf "[global]\\ncert = %s\\n" "$1" > /etc/pip.conf', CA_BUNDLE)
    server.sh("mkdir -p /etc/uv && echo 'native-tls = true' > /etc/uv/uv.toml")  # uv: the system's CA store
    server.sh('useradd -m -s /bin/sh "$1" && loginctl enable-linger "$1"', APP_USER)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.sh('test -S "/run/user/$(id -u "$1")/systemd/private" && echo yes || true', APP_USER).strip():
            return
        time.sleep(0.2)
    raise AssertionError("the app account's user manager did not start")


def exposure(unit: Path) -> float:
    """systemd-analyze's overall exposure (0 safe … 10 unsafe) for a unit file, without loading it."""
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True,
                         text=True, check=False).stdout
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", out)
    assert found, out
    return float(found.group(1))
