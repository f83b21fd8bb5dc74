"""Fixtures for apps on a real systemd server: the container (one per session) and a workspace on it."""
from __future__ import annotations

import secrets
from typing import Iterator

import pytest

from tests.conftest import Home
from tests.systemd_server import APP_USER, SystemdServer, build_image, start_server


@pytest.fixture(scope="session")
def systemd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemdServer]:
    """One systemd+sshd container for the session, removed by its id at the end."""
    build_image()
    server = start_server(tmp_path_factory.mktemp("systemd-server"))
    yield server
    server.stop()


@pytest.fixture
def server(systemd_server: SystemdServer, home: Home) -> SystemdServer:
    """The session's container, trusted by this test's home and accepting its key (root and app)."""
    systemd_server.authorize(home.key.with_suffix(".pub").read_text())
    home.trust(systemd_server)  # type: ignore[arg-type] - any object with known_hosts_line()
    return systemd_server


@pytest.fixture(params=["root", APP_USER])
def login(request: pytest.FixtureRequest) -> str:
    """Each apps test runs as root (system units) and as a non-root account (user units, lingering)."""
    return request.param


@pytest.fixture
def app_name(server: SystemdServer, login: str) -> Iterator[str]:
    """A workspace name no other test uses; its units are stopped and removed afterwards."""
    name = "t" + secrets.token_hex(4)
    yield name
    flag = "" if login == "root" else "--user"
    server.sh(f'systemctl {flag} stop "bridge-$1-*" 2>/dev/null; rm -f /etc/systemd/system/bridge-"$1"-* '
              f'"$HOME"/.config/systemd/user/bridge-"$1"-*; systemctl {flag} daemon-reload', name, user=login,
              check=False)


def deploy_root(login: str, name: str) -> str:
    """Where a test deploys on the server: under the login's home."""
    return f"/root/srv/{name}" if login == "root" else f"/home/{APP_USER}/srv/{name}"

