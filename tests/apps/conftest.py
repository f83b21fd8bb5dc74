"""Fixtures for apps on a real systemd server: the container (one per session) and a workspace on it."""
from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.conftest import Home, Result, write_config
from tests.sync.test_push import commit, git
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
    server.sh(f'systemctl {flag} stop "bridge-$1[-.]*" 2>/dev/null; rm -f /etc/systemd/system/bridge-"$1"[-.]* '
              f'"$HOME"/.config/systemd/user/bridge-"$1"[-.]*; systemctl {flag} daemon-reload', name, user=login,
              check=False)


def deploy_root(login: str, name: str) -> str:
    """Where a test deploys on the server: under the login's home."""
    return f"/root/srv/{name}" if login == "root" else f"/home/{APP_USER}/srv/{name}"



APP_SOURCE = (Path(__file__).parent / "app.py").read_text()


class AppWorkspace:
    """A workspace whose default remote is the systemd server as `login`, with the test app in it."""

    def __init__(self, bridge: Callable[..., Result], folder: Path, server: SystemdServer, login: str,
                 name: str, port: int) -> None:
        self.bridge, self.folder, self.server, self.login = bridge, folder, server, login
        self.name, self.port = name, port
        self.root = deploy_root(login, name)

    def run(self, *args: str, **kwargs: object) -> Result:
        return self.bridge(*args, cwd=self.folder, **kwargs)

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        return commit(self.folder, files, message)

    def get(self, path: str = "/") -> tuple[int, str]:
        """An HTTP GET from this machine to the app on the server: (status, body), (0, error) when refused."""
        try:
            with urllib.request.urlopen(f"http://{self.server.ip}:{self.port}{path}", timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, ""
        except OSError as e:
            return 0, str(e)

    def serving(self, body: str, path: str = "/", timeout: float = 30) -> bool:
        """Wait until the app answers `body` (processes start asynchronously); False if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.get(path) == (200, body):
                return True
            time.sleep(0.2)
        return False

    def on_server(self, script: str, *args: str) -> str:
        return self.server.sh(script, *args, user=self.login)

    def current(self) -> str:
        return self.on_server('basename "$(readlink "$1/current")"', self.root).strip()


@pytest.fixture
def app_ws(bridge: Callable[..., Result], workspace: Path, server: SystemdServer, login: str,
           app_name: str) -> AppWorkspace:
    """The test app (web from a Procfile) in a git workspace, `bridge init` done, nothing pushed yet."""
    ws = AppWorkspace(bridge, workspace, server, login, app_name, 20000 + secrets.randbelow(20000))
    git(workspace, "init", "-q", "-b", "main")
    write_config(workspace, f"workspace: {app_name}\ndefault: prod\nremotes:\n"
                            f"  prod: {{url: {json.dumps(server.url(login, ws.root))}}}\n"
                            f"deploy:\n  web_port: {ws.port}\n  keep_releases: 3\n")
    ws.commit({"app.py": APP_SOURCE, "version.txt": "v1\n", "Procfile": "web: python3 app.py\n"}, "first")
    result = ws.run("init")
    assert result.code == 0, result
    return ws
