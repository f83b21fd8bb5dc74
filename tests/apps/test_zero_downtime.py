"""Zero-downtime `web` behind the nginx front (front.py), under load on the real systemd server.

A client sends 50 requests/s to web_port, each on a new connection, while bridge deploys: every
answer must be a 200 from some release, none refused, none failed. As root (system units) and as a
lingering non-root account (user units, a user-owned nginx).
"""
from __future__ import annotations

import http.client
import threading
import time
from collections import Counter

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
