#!/usr/bin/env python3
"""Zero-downtime `web`: each release's web runs in a slot of its own behind an nginx front on web_port.

A deploy starts the new release in the idle slot (`bridge-<ws>-web@a|b`, on a free $PORT of its own),
the healthcheck asks it there, then the front's config names it and nginx reloads gracefully: new
workers take new connections while the old ones finish theirs. Once the old workers are gone the old
slot stops. Until that reload the old slot serves alone, so a failed healthcheck only stops the new one.

The front is Debian's nginx binary run as a unit of this app (`bridge-<ws>.front`, a system unit for
root, a user unit otherwise) with its config under .bridge/front/: a non-root login cannot reload the
system nginx, and one path for both leaves /etc/nginx alone. `deploy.front: auto` (the default) uses
it when nginx is installed and restarts web in place otherwise; `nginx` requires it; `none` never.

Runs on the server (stdlib, Python 3.9+) beside apps.py.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

try:  # installed on the server: layout.py and units.py sit beside this file
    from layout import Layout
    from units import AppError, Systemd, safe_name, unit_name, unit_quote
except ImportError:  # imported from the bridge package
    from .layout import Layout
    from .units import AppError, Systemd, safe_name, unit_name, unit_quote

MODES = ("auto", "nginx", "none")
SLOTS = ("a", "b")
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"
WORKERS_GONE_WAIT = 40.0  # seconds; the config's worker_shutdown_timeout (30 s) bounds an old worker's life
NO_NGINX_NOTE = ("web restarted in place (requests are refused while it restarts): nginx is not installed "
                 "on the server; apt-get install nginx-light for zero-downtime switches")

NGINX_CONF = """# Written by bridge for %(root)s: the zero-downtime front of `web` (front.py). Rewritten each deploy.
daemon off;
worker_processes 1;
pid %(pid)s;
error_log stderr warn;
worker_shutdown_timeout 30s;
events { worker_connections 1024; }
http {
    access_log off;
    client_max_body_size 0;
%(temp_paths)s
    map $http_upgrade $connection_upgrade { default upgrade; "" ""; }
    upstream bridge_web { server 127.0.0.1:%(port)d; keepalive 16; }
    server {
        listen %(web_port)d;
        location / {
            proxy_pass http://bridge_web;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout 3600s;
        }
    }
}
"""


# ---------------------------------------------------------------- whether to use it


def nginx_binary() -> str | None:
    import shutil  # not at the top: every push imports this module, few use the front

    return shutil.which("nginx", path=os.pathsep.join([os.environ.get("PATH") or "", SBIN_PATH]))


def wanted(settings: dict) -> bool:
    """Whether web runs behind the front: deploy.front, and nginx being installed for `auto`."""
    mode = settings.get("front") or "auto"
    if mode not in MODES:
        raise AppError("deploy.front is %r; use auto, nginx or none" % mode)
    if mode == "none":
        return False
    if nginx_binary():
        return True
    if mode == "nginx":
        raise AppError("deploy.front is nginx, but nginx is not installed on the server: "
                       "apt-get install nginx-light (or nginx), or set deploy.front: auto to restart web in place")
    return False


# ---------------------------------------------------------------- state: which slot runs which release


def read_state(layout: Layout) -> dict:
    """{"active": slot or None, "pending": slot or None, "slots": {slot: {"release", "port"}}}."""
    try:
        state = json.loads(front_state(layout).read_text())
    except (OSError, ValueError):
        state = {}
    return {"active": state.get("active"), "pending": state.get("pending"), "slots": state.get("slots") or {}}


def write_state(layout: Layout, state: dict) -> None:
    path = front_state(layout)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, sort_keys=True))
    os.replace(str(tmp), str(path))


def front_dir(layout: Layout) -> Path:
    return layout.state / "front"


def front_state(layout: Layout) -> Path:
    return layout.state / "front.json"


def slot_of(layout: Layout, slot: str) -> dict:
    """The release and port of a slot, for its unit's ExecStart (apps.py run web SLOT)."""
    entry = read_state(layout)["slots"].get(slot)
    if slot not in SLOTS or not entry:
        raise AppError("web slot %r holds no release under %s" % (slot, layout.root))
    return entry


def pending_port(layout: Layout) -> int | None:
    """The port of the slot started but not yet switched to (the healthcheck asks it there)."""
    state = read_state(layout)
    return state["slots"][state["pending"]]["port"] if state["pending"] else None


def in_use(layout: Layout) -> bool:
    return front_state(layout).is_file()


# ---------------------------------------------------------------- units


def slot_template(settings: dict) -> str:
    return unit_name(settings, "web@")


def slot_unit(settings: dict, slot: str) -> str:
    return unit_name(settings, "web@" + slot)


def front_unit(settings: dict) -> str:
    """`bridge-<ws>.front.service`: a dot no process name can hold, so no Procfile entry collides."""
    return "bridge-%s.front.service" % safe_name(settings.get("workspace") or "app")


def active_units(layout: Layout, settings: dict) -> list:
    """What serves web now: the active slot and the front."""
    state = read_state(layout)
    return [slot_unit(settings, state["active"]), front_unit(settings)] if state["active"] else []


def journal_units(settings: dict) -> list:
    """Both slots (a deploy's log spans the old and the new one) and the front."""
    return [slot_unit(settings, "*"), front_unit(settings)]


def slot_unit_text(layout: Layout, settings: dict, apps_argv: list, systemd: Systemd) -> str:
    """The template of both slots: apps.py runs the slot's recorded release on the slot's port."""
    exec_start = " ".join(unit_quote(a) for a in apps_argv) + " %i"
    return unit_file("bridge app %s: web slot %%i (%s)" % (settings.get("workspace") or "app", layout.root),
                     ["ExecStart=" + exec_start, "Restart=on-failure", "RestartSec=1", "TimeoutStopSec=15",
                      "SyslogIdentifier=" + safe_name("%s-web" % (settings.get("workspace") or "app"))],
                     systemd)


def front_unit_text(layout: Layout, settings: dict, nginx: str, systemd: Systemd) -> str:
    argv = [nginx, "-e", "stderr", "-c", str(front_dir(layout) / "nginx.conf")]
    return unit_file("bridge app %s: nginx front of web on :%d (%s)"
                     % (settings.get("workspace") or "app", web_port(settings), layout.root),
                     ["ExecStart=" + " ".join(unit_quote(a) for a in argv), "ExecReload=/bin/kill -HUP $MAINPID",
                      "Restart=on-failure", "RestartSec=1",
                      "SyslogIdentifier=" + safe_name("%s-front" % (settings.get("workspace") or "app"))],
                     systemd)


def unit_file(description: str, service: list, systemd: Systemd) -> str:
    return "\n".join(["[Unit]", "Description=" + description.replace("\n", " "), "After=network.target", "",
                      "[Service]", "Type=simple", *service, "", "[Install]", "WantedBy=" + systemd.target, ""])


def write_unit(systemd: Systemd, name: str, text: str) -> bool:
    """Write a unit file if it differs; True when systemd must reload."""
    path = systemd.unit_dir / name
    if path.is_file() and path.read_text() == text:
        return False
    systemd.unit_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True


# ---------------------------------------------------------------- a switch


def start_slot(layout: Layout, settings: dict, release: str, apps_argv: list, systemd: Systemd) -> str:
    """Start `release` in the idle slot on a free port, beside the one serving; nothing switches yet."""
    state = read_state(layout)
    if state["pending"]:  # left by a deploy that died between start and switch
        systemd.run("stop", slot_unit(settings, state["pending"]))
    slot = "b" if state["active"] == "a" else "a"
    state["slots"][slot] = {"release": release, "port": free_port()}
    state["pending"] = slot
    write_state(layout, state)
    if write_unit(systemd, slot_template(settings), slot_unit_text(layout, settings, apps_argv, systemd)):
        systemd.check("daemon-reload")
    unit = slot_unit(settings, slot)
    systemd.run("reset-failed", unit)
    systemd.check("restart", unit)
    return "web: releases/%s started in slot %s on :%d, beside the one serving" % (release, slot,
                                                                                  state["slots"][slot]["port"])


def switch(layout: Layout, settings: dict, systemd: Systemd) -> str:
    """Point the front at the pending slot once it listens, reload nginx gracefully, stop the old slot."""
    state = read_state(layout)
    slot, old = state["pending"], state["active"]
    if not slot:
        return ""
    port = state["slots"][slot]["port"]
    wait_listening(port, float(settings.get("healthcheck_timeout") or 30),
                   "web in slot %s never listened on :%d (its $PORT)" % (slot, port))
    nginx = nginx_binary()
    if not nginx:
        raise AppError("nginx is gone from the server; apt-get install nginx-light, or set deploy.front: none")
    write_config(layout, settings, port, nginx)
    unit = front_unit(settings)
    changed = write_unit(systemd, unit, front_unit_text(layout, settings, nginx, systemd))
    if changed:
        systemd.check("daemon-reload")
    master = main_pid(systemd, unit)
    if master and not changed:
        old_workers = children(master)
        systemd.check("reload", unit)
        note = wait_workers_gone(old_workers)
    else:
        systemd.run("reset-failed", unit)
        systemd.check("restart", unit)
        wait_listening(web_port(settings), 10, "the nginx front did not listen on :%d; see `bridge logs`"
                       % web_port(settings))
        note = ""
    if old and old != slot:
        systemd.run("stop", slot_unit(settings, old))
        systemd.run("--no-reload", "disable", slot_unit(settings, old))
    # What starts at boot: symlinks only, read at boot; --no-reload spares each deploy a daemon-reload.
    systemd.check("--no-reload", "enable", slot_unit(settings, slot), unit)
    state.update(active=slot, pending=None)
    write_state(layout, state)
    stopped = ", the old slot stopped" if old and old != slot else ""
    return "web: nginx on :%d now sends to slot %s (:%d)%s%s" % (web_port(settings), slot, port, stopped, note)


def abandon(layout: Layout, settings: dict, systemd: Systemd) -> None:
    """After a failed healthcheck: stop the slot that was never switched to; the active one serves on."""
    state = read_state(layout)
    if state["pending"]:
        systemd.run("stop", slot_unit(settings, state["pending"]))
        state["pending"] = None
        write_state(layout, state)


def teardown(layout: Layout, settings: dict, systemd: Systemd) -> None:
    """Web no longer runs behind the front (deploy.front: none, nginx removed, no web): stop and remove it."""
    if not in_use(layout):
        return
    units = [front_unit(settings)] + [slot_unit(settings, s) for s in SLOTS]
    systemd.run("disable", "--now", *units)
    for name in (front_unit(settings), slot_template(settings)):
        (systemd.unit_dir / name).unlink(missing_ok=True)
    systemd.run("daemon-reload")
    front_state(layout).unlink()


def write_config(layout: Layout, settings: dict, port: int, nginx: str) -> None:
    """nginx.conf naming `port`, checked by `nginx -t` before it replaces the one in use."""
    import subprocess

    folder = front_dir(layout)
    tmp_dir = temp_dir(layout, settings)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    temp_paths = "\n".join("    %s_temp_path %s;" % (kind, nginx_word(str(tmp_dir / kind)))
                           for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    comment = " ".join(str(layout.root).split())  # the root in a comment line: no newline may end it
    text = NGINX_CONF % {"root": comment, "pid": nginx_word(str(folder / "nginx.pid")),
                         "temp_paths": temp_paths, "port": port, "web_port": web_port(settings)}
    conf, candidate = folder / "nginx.conf", folder / "nginx.conf.new"
    candidate.write_text(text)
    proc = subprocess.run([nginx, "-t", "-q", "-e", "stderr", "-c", str(candidate)], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if proc.returncode != 0:
        raise AppError("nginx -t refused the front's config, the old one stays: %s"
                       % " ".join(proc.stdout.split())[-300:])
    os.replace(str(candidate), str(conf))


def temp_dir(layout: Layout, settings: dict) -> Path:
    """Where nginx buffers large bodies. Root's workers run as nobody, who cannot enter /root: /var/lib."""
    if os.geteuid() != 0:
        return front_dir(layout) / "tmp"
    import hashlib

    tag = hashlib.sha256(str(layout.root).encode()).hexdigest()[:10]
    return Path("/var/lib/bridge-front") / ("%s-%s" % (safe_name(settings.get("workspace") or "app"), tag))


def nginx_word(text: str) -> str:
    """A path as one nginx token: quoted, with `\\` and `"` escaped."""
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')


def web_port(settings: dict) -> int:
    return int(settings.get("web_port") or 8000)


# ---------------------------------------------------------------- waiting


def free_port() -> int:
    """A port nothing on 127.0.0.1 listens on now, for a new slot."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_listening(port: int, timeout: float, failure: str) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AppError(failure)
            time.sleep(0.05)


def main_pid(systemd: Systemd, unit: str) -> int:
    proc = systemd.run("show", "--property=MainPID", "--value", unit)
    return int(proc.stdout.strip() or 0) if proc.returncode == 0 else 0


def children(pid: int) -> set:
    """PIDs whose parent is `pid` (the nginx master's workers), from /proc."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path("/proc", entry, "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry))
    return found


def wait_workers_gone(pids: set) -> str:
    """After a reload: until the old workers finished their requests and exited, the old slot must serve."""
    deadline = time.monotonic() + WORKERS_GONE_WAIT
    while any(os.path.exists("/proc/%d" % pid) for pid in pids):
        if time.monotonic() > deadline:
            return " (an old nginx worker still ran after %gs)" % WORKERS_GONE_WAIT
        time.sleep(0.05)
    return ""
