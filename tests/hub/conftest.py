"""Fixtures for hub tests: the real `bridge hub serve` (uvicorn, TLS 1.3) and real `bridge agent up` processes."""
from __future__ import annotations

import json
import signal
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.conftest import BRIDGE, Home
from tests.sshd import free_port, wait_port

PING = 1.0  # seconds between pings in tests: a dead peer is noticed within two


def wait_for(check: Callable[[], object], timeout: float, every: float = 0.05) -> object:
    """`check()`'s first truthy value; raises AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not true after {timeout}s: {check}")


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM the process we started (by its PID), then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Hub:
    """A running `bridge hub serve` on loopback; tokens are made with the real CLI against its state dir."""

    home: Home
    state: Path
    port: int
    log: Path
    host: str = "127.0.0.1"
    proc: subprocess.Popen | None = None
    fingerprint: str = ""
    extra_env: dict = field(default_factory=dict)
    prefix: tuple[str, ...] = ()  # e.g. prlimit: what the hub is started under
    ping: float = PING

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"wss://{self.address}"

    def start(self) -> "Hub":
        out = self.log.open("ab")
        self.proc = subprocess.Popen([*self.prefix, *BRIDGE, "hub", "serve", "--host", self.host, "--port", str(self.port),
                                      "--state", str(self.state), "--ping", str(self.ping)],
                                     stdout=out, stderr=subprocess.STDOUT, env={**self.home.env, **self.extra_env})
        wait_port(self.port, 20)
        self.fingerprint = wait_for(self._printed_fingerprint, 10)
        return self

    def _printed_fingerprint(self) -> str:
        for line in self.log.read_text().splitlines():
            if "certificate fingerprint" in line:
                return line.split()[-1]
        return ""

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([*BRIDGE, "hub", *args, "--state", str(self.state)], capture_output=True, text=True,
                              env=self.home.env, timeout=60)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def token(self, kind: str, name: str, *extra: str) -> str:
        proc = self.cli("token", kind, name, *extra)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def api(self, path: str, token: str, body: dict | None = None) -> tuple[int, dict]:
        """An HTTPS request to the hub's API (TLS verified against the hub's own certificate)."""
        context = ssl.create_default_context(cafile=str(self.state / "tls.crt"))
        context.check_hostname = False
        request = urllib.request.Request(f"https://{self.address}{path}", method="POST" if body is not None else "GET",
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, context=context, timeout=60) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def online(self, admin: str) -> list[str]:
        return [a["name"] for a in self.api("/api/v1/agents", admin)[1]["agents"] if a["online"]]


@dataclass
class Agent:
    """A running `bridge agent up` with its own state dir."""

    home: Home
    state: Path
    log: Path
    proc: subprocess.Popen | None = None

    def start(self, hub: str | None = None, token: str | None = None, *extra: str, env: dict | None = None,
              prefix: tuple[str, ...] = ()) -> "Agent":
        args = [*prefix, *BRIDGE, "agent", "up", "--state", str(self.state), "--ping", str(PING), "--backoff-cap", "2",
                *(["--hub", hub] if hub else []), *(["--token", token] if token else []), *extra]
        self.proc = subprocess.Popen(args, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
                                     env={**self.home.env, **(env or {})})
        return self

    def status(self) -> dict:
        proc = subprocess.run([*BRIDGE, "agent", "status", "--json", "--state", str(self.state)],
                              capture_output=True, text=True, env=self.home.env, timeout=30)
        return json.loads(proc.stdout)

    def connected(self) -> bool:
        return self.status().get("state") == "connected"

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


@pytest.fixture
def hub(home: Home, tmp_path: Path) -> Iterator[Hub]:
    """A started hub with a fresh state dir (its self-signed certificate made on this first run)."""
    server = Hub(home, tmp_path / "hubstate", free_port(), tmp_path / "hub.log").start()
    yield server
    server.stop()


@pytest.fixture
def admin(hub: Hub) -> str:
    """An admin user token for the API."""
    return hub.token("user", "root-admin", "--role", "admin", "--ttl", "1h")


@pytest.fixture
def agent_factory(home: Home, tmp_path: Path) -> Iterator[Callable[[str], Agent]]:
    """Make agents (not started); every one started is stopped afterwards, by its PID."""
    agents: list[Agent] = []

    def make(name: str) -> Agent:
        agent = Agent(home, tmp_path / f"agent-{name}-{len(agents)}", tmp_path / f"agent-{name}-{len(agents)}.log")
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.stop()


@pytest.fixture
def agent(hub: Hub, agent_factory: Callable[[str], Agent]) -> Agent:
    """Agent `web1`, enrolled with a one-time token and connected."""
    started = agent_factory("web1").start(hub.url, hub.token("agent", "web1"))
    wait_for(started.connected, 30)
    return started
