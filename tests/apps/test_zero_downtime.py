"""Zero-downtime `web` behind the nginx front (front.py), under load on the real systemd server.

A client sends 50 requests/s to web_port, each on a new connection, while bridge deploys: every
answer must be a 200 from some release, none refused, none failed. As root (system units) and as a
lingering non-root account (user units, a user-owned nginx).
"""
from __future__ import annotations

import contextlib
import http.client
import threading
import time
from collections import Counter
from typing import Iterator

from tests.apps.conftest import AppWorkspace

RATE = 50  # requests per second


class Load:
    """A thread asking GET / at RATE per second; counts each answer's body and each failure."""

    def __init__(self, ws: AppWorkspace) -> None:
        self.ws = ws
        self.bodies: Counter[str] = Counter()
        self.failures: list[str] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self) -> "Load":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()

    def run(self) -> None:
        start, sent = time.monotonic(), 0
        while not self.stopping.is_set():
            self.ask()
            sent += 1
            pause = start + sent / RATE - time.monotonic()
            if pause > 0:
                time.sleep(pause)

    def ask(self) -> None:
        connection = http.client.HTTPConnection(self.ws.server.ip, self.ws.port, timeout=10)
        try:
            connection.request("GET", "/")
            answer = connection.getresponse()
            body = answer.read().decode()
            if answer.status == 200:
                self.bodies[body] += 1
            else:
                self.failures.append(f"HTTP {answer.status}: {body[:80]}")
        except OSError as e:  # refused, reset, timed out
            self.failures.append(f"{type(e).__name__}: {e}")
        finally:
            connection.close()

    @property
    def total(self) -> int:
        return sum(self.bodies.values()) + len(self.failures)


def with_healthcheck(ws: AppWorkspace) -> None:
    ws.commit({"bridge.yaml": (ws.folder / "bridge.yaml").read_text()
               + "  healthcheck: /health\n  healthcheck_timeout: 5\n"}, "healthcheck")


def test_five_deploys_under_load_refuse_no_request(app_ws: AppWorkspace) -> None:
    with_healthcheck(app_ws)
    first = app_ws.run("push")
    assert first.code == 0, first
    assert "nginx on :%d now sends to slot" % app_ws.port in first.out, first
    assert app_ws.serving("v1")
    with Load(app_ws) as load:
        for n in range(2, 7):
            app_ws.commit({"version.txt": f"v{n}\n"}, f"v{n}")
            result = app_ws.run("push")
            assert result.code == 0, result
            assert app_ws.serving(f"v{n}")
            time.sleep(0.5)  # a moment of the new release alone under load
    assert load.failures == [], (len(load.failures), load.total, load.failures[:5])
    assert {f"v{n}" for n in range(2, 7)} <= set(load.bodies), load.bodies
    assert set(load.bodies) <= {f"v{n}" for n in range(1, 7)}, load.bodies
    states = app_ws.on_server('cat "$1/.bridge/front.json"', app_ws.root)
    assert '"pending": null' in states


def test_a_failed_healthcheck_stops_only_the_new_slot_under_load(app_ws: AppWorkspace) -> None:
    with_healthcheck(app_ws)
    assert app_ws.run("push").code == 0
    assert app_ws.serving("v1")
    good = app_ws.current()
    with Load(app_ws) as load:
        app_ws.commit({"version.txt": "broken\n"}, "broken")
        result = app_ws.run("push")
        time.sleep(0.5)
    assert result.code != 0, result
    assert f"back on releases/{good}" in result.out + result.err
    assert load.failures == [], (len(load.failures), load.total, load.failures[:5])
    assert set(load.bodies) == {"v1"}, load.bodies
    assert app_ws.current() == good
    flag = "" if app_ws.login == "root" else "--user"
    active = app_ws.on_server(f'systemctl {flag} list-units --plain --no-legend --state=active "$1" | cut -d" " -f1',
                              f"bridge-{app_ws.name}-web@*.service").split()
    assert len(active) == 1, active  # the new slot was stopped, the old one serves on


def test_bridge_restart_switches_slots_without_refusing(app_ws: AppWorkspace) -> None:
    assert app_ws.run("push").code == 0
    assert app_ws.serving("v1")
    with Load(app_ws) as load:
        for _ in range(2):
            result = app_ws.run("restart")
            assert result.code == 0, result
    assert load.failures == [], (len(load.failures), load.total, load.failures[:5])
    assert set(load.bodies) == {"v1"}, load.bodies


@contextlib.contextmanager
def nginx_removed(ws: AppWorkspace) -> Iterator[None]:
    """The server without nginx for a moment (its binary renamed; the session's container is ours)."""
    ws.server.sh("mv /usr/sbin/nginx /usr/sbin/nginx.hidden")
    try:
        yield
    finally:
        ws.server.sh("mv /usr/sbin/nginx.hidden /usr/sbin/nginx")


def test_without_nginx_web_restarts_in_place_and_says_so_then_moves_behind_the_front(app_ws: AppWorkspace) -> None:
    with nginx_removed(app_ws):
        result = app_ws.run("push")
        assert result.code == 0, result
        assert "web restarted in place" in result.out and "apt-get install nginx-light" in result.out
        assert app_ws.serving("v1")
        flag = "" if app_ws.login == "root" else "--user"
        assert app_ws.on_server(f'systemctl {flag} is-active "$1"', f"bridge-{app_ws.name}-web.service").strip() \
            == "active"
    app_ws.commit({"version.txt": "v2\n"})
    moved = app_ws.run("push")
    assert moved.code == 0, moved
    assert "nginx on :%d now sends to slot a" % app_ws.port in moved.out, moved
    assert app_ws.serving("v2")
    assert not app_ws.on_server(f'ls "$1" | grep -x "bridge-{app_ws.name}-web.service" || true',
                                "/etc/systemd/system" if app_ws.login == "root" else
                                f"/home/{app_ws.login}/.config/systemd/user").strip()


def test_front_nginx_without_nginx_fails_before_the_switch(app_ws: AppWorkspace) -> None:
    assert app_ws.run("push").code == 0
    good = app_ws.current()
    app_ws.commit({"bridge.yaml": (app_ws.folder / "bridge.yaml").read_text() + "  front: nginx\n",
                   "version.txt": "v2\n"})
    with nginx_removed(app_ws):
        result = app_ws.run("push")
    assert result.code != 0, result
    assert "deploy.front is nginx, but nginx is not installed on the server" in result.out + result.err
    assert "Traceback" not in result.out + result.err
    assert app_ws.current() == good
    assert app_ws.serving("v1")
