"""Fixtures for tunnel tests: a firewalled server in a namespace, a relay on the host, a running `tunnel up`."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.conftest import Home, write_config
from tests.sshd import SSHServer, free_port, keygen
from tests.tunnel.netns import Namespace, NsSSHServer, usable

KEEPALIVE = 2.0
BACKOFF_CAP = 4.0



def wait_for(check: Callable[[], bool], timeout: float, every: float = 0.05) -> float:
    """Seconds until `check()` held; raises AssertionError after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(every)
    raise AssertionError(f"not true after {timeout}s: {check}")


@dataclass
class TunnelEnv:
    """The whole scene; `start()` runs `bridge tunnel up` inside the namespace."""

    home: Home
    ns: Namespace
    server: NsSSHServer
    relay: SSHServer
    relay_port: int
    tunnel_ws: Path
    client_ws: Path
    ssh_config: Path
    proc: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return self.tunnel_ws / "tunnel.log"

    def start(self) -> "TunnelEnv":
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.ns.argv([sys.executable, "-m", "bridge", "tunnel", "up"]),
                                         cwd=self.tunnel_ws, env=self.home.env, stdout=log, stderr=log)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def usable(self) -> bool:
        return usable(self.relay_port)

    def add_forward(self, relay_port: int) -> None:
        """A second forward, `relay_port` on the relay to the same firewalled sshd (before `start()`)."""
        config = self.tunnel_ws / "bridge.yaml"
        first = f'"{self.relay_port}:127.0.0.1:{self.server.port}"'
        config.write_text(config.read_text().replace(first, f'{first}, "{relay_port}:127.0.0.1:{self.server.port}"'))

    def relay_settings(self, *lines: str) -> None:
        """Restart the relay's sshd with these extra sshd_config lines (before `start()`)."""
        self.relay.stop()
        self.relay.extra_config = [*self.relay.extra_config, *lines]
        self.relay.start()

    def status(self, bridge) -> dict:
        """`bridge tunnel status --json` in the tunnel's workspace."""
        return json.loads(bridge("tunnel", "status", "--json", cwd=self.tunnel_ws).out)

    def ssh(self, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
        """Plain OpenSSH with only our config, key and known_hosts."""
        return subprocess.run(["ssh", "-F", str(self.ssh_config), *args], capture_output=True, text=True,
                              timeout=timeout)


def _ssh_config(home: Home) -> Path:
    path = home.path / "ssh_config_plain"
    path.write_text(f"Host *\n  User root\n  IdentityFile {home.key}\n  IdentitiesOnly yes\n"
                    f"  UserKnownHostsFile {home.ssh / 'known_hosts'}\n  StrictHostKeyChecking yes\n"
                    f"  BatchMode yes\n  ConnectTimeout 3\n")
    return path


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    ns = Namespace.create()
    try:
        ns.firewall()
        yield ns
    finally:
        ns.destroy()


@pytest.fixture
def tunnel_env(home: Home, tmp_path: Path, namespace: Namespace,
               sshd_factory: Callable[..., SSHServer]) -> Iterator[TunnelEnv]:
    """Relay on the host (127.0.0.1 and the veth), server in the namespace, two workspaces; tunnel not started."""
    relay = sshd_factory(extra_config=[f"ListenAddress {namespace.host_ip}"])
    server = _ns_server(home, tmp_path, namespace)
    relay_port = free_port()
    env = TunnelEnv(home, namespace, server, relay, relay_port, tmp_path / "tunws", tmp_path / "clientws",
                    _ssh_config(home))
    _trust(home, relay, namespace, server, relay_port)
    env.tunnel_ws.mkdir()
    env.client_ws.mkdir()
    write_config(env.tunnel_ws, _tunnel_yaml(relay, namespace, server, relay_port))
    write_config(env.client_ws, f"workspace: client\nremotes:\n  relay: {relay.url()}\n"
                                f"  edge: {{url: \"ssh://root@localhost:{relay_port}/tmp\", via: relay}}\n")
    try:
        yield env
    finally:
        env.stop()
        server.stop()


def _ns_server(home: Home, tmp_path: Path, ns: Namespace) -> NsSSHServer:
    folder = tmp_path / "nssshd"
    folder.mkdir()
    server = NsSSHServer(folder, free_port(), home.key, [], ns=ns)
    keygen(server.host_key)
    server.authorized_keys.write_text(home.key.with_suffix(".pub").read_text())
    return server.start()


def _trust(home: Home, relay: SSHServer, ns: Namespace, server: NsSSHServer, relay_port: int) -> None:
    """known_hosts: the relay as the namespace sees it, the server as clients reach it (localhost:RPORT)."""
    relay_key = relay.host_key.with_suffix(".pub").read_text().split()[:2]
    server_key = server.host_key.with_suffix(".pub").read_text().split()[:2]
    with (home.ssh / "known_hosts").open("a") as f:
        f.write(f"[{ns.host_ip}]:{relay.port} {' '.join(relay_key)}\n")
        f.write(f"[localhost]:{relay_port} {' '.join(server_key)}\n")


def _tunnel_yaml(relay: SSHServer, ns: Namespace, server: NsSSHServer, relay_port: int) -> str:
    return (f"workspace: edge\nremotes:\n  relay: ssh://root@{ns.host_ip}:{relay.port}\n"
            f"tunnel:\n  relay: relay\n  forwards: [\"{relay_port}:127.0.0.1:{server.port}\"]\n"
            f"  keepalive: {KEEPALIVE}\n  backoff_cap: {BACKOFF_CAP}\n")
