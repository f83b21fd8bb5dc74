#!/usr/bin/env python3
"""The app's processes on the server: Procfile -> systemd units, their environment, config.env.

Runs on the server (stdlib, Python 3.9+) beside hook.py and layout.py. The hook calls it during a
deploy; the client runs `apps.py --root ROOT ps|logs|start|stop|restart|config-*` (layout.apps_argv);
each unit's ExecStart is `apps.py --root ROOT run PROCESS`, which builds the process's environment
from the release `current` points at and then execs the command, so a unit file never changes
between releases and never holds a command or a config value.

systemd supervises (no supervisor of our own): system units for root, user units otherwise, which
need lingering (`loginctl enable-linger`) to outlive the SSH session.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

try:  # installed on the server: layout.py, units.py and front.py sit beside this file
    import front
    from layout import RELEASE_BIN_DIRS, Layout, ServerError
    from units import AppError, Systemd, unit_name, unit_quote, safe_name
except ImportError:  # imported from the bridge package
    from . import front
    from .layout import RELEASE_BIN_DIRS, Layout, ServerError
    from .units import AppError, Systemd, unit_name, unit_quote, safe_name

PROCESS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
CONFIG_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ONE_OFF = "release"  # Procfile's `release:` runs once per deploy, before the switch
WEB = "web"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# ---------------------------------------------------------------- processes


def parse_procfile(text: str, source: str = "Procfile") -> dict:
    """`name: command` lines (Heroku's format); blank lines and `#` comments skipped."""
    processes = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        name = name.strip()
        if not sep or not command.strip():
            raise AppError("%s:%d: expected `name: command`, got %r" % (source, number, line))
        check_process_name(name, "%s:%d" % (source, number))
        processes[name] = command.strip()
    return processes


def check_process_name(name: str, where: str) -> None:
    if not PROCESS_NAME.match(name):
        raise AppError("%s: process name %r: use letters, digits, - and _ (up to 40)" % (where, name))


def release_processes(release: Path, settings: dict) -> dict:
    """The processes of a release: bridge.yaml's `deploy.processes` if set, else the release's Procfile."""
    configured = settings.get("processes") or {}
    for name, command in configured.items():
        check_process_name(name, "deploy.processes")
        if "\n" in command:
            raise AppError("deploy.processes.%s: a command is one line" % name)
    if configured:
        return dict(configured)
    procfile = release / "Procfile"
    return parse_procfile(procfile.read_text(), "Procfile") if procfile.is_file() else {}


def services(processes: dict) -> dict:
    """The long-running ones (everything but `release:`)."""
    return {name: command for name, command in processes.items() if name != ONE_OFF}


# ---------------------------------------------------------------- config.env


def encode_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def decode_value(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def read_config(layout: Layout) -> dict:
    """The app's config: KEY=VALUE lines, backslash escapes for `\\` and newlines. None yet: empty."""
    try:
        text = layout.config_env.read_text()
    except FileNotFoundError:
        return {}
    config = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and CONFIG_KEY.match(key):
            config[key] = decode_value(value)
    return config


def write_config(layout: Layout, config: dict) -> None:
    """Replace config.env in one rename; the file is 0600 from its first byte."""
    layout.state.mkdir(parents=True, exist_ok=True)
    tmp = layout.config_env.with_name(layout.config_env.name + ".tmp")
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("".join("%s=%s\n" % (k, encode_value(v)) for k, v in sorted(config.items())))
    os.chmod(str(tmp), 0o600)
    os.replace(str(tmp), str(layout.config_env))


def check_config_key(key: str) -> None:
    if not CONFIG_KEY.match(key):
        raise AppError("config key %r: use letters, digits and _, not starting with a digit" % key)


# ---------------------------------------------------------------- environment


def app_env(layout: Layout, release: Path, settings: dict, base: dict, process: str | None = None) -> dict:
    """The environment the app runs with: config.env, the release's venv and node_modules/.bin first on
    PATH, VIRTUAL_ENV, and PORT (= deploy.web_port) for `web`. Deploy commands get the same."""
    env = dict(base)
    env.update(read_config(layout))
    venv = release / ".venv"
    front = [str(p) for p in (release / folder for folder in RELEASE_BIN_DIRS) if p.is_dir()]
    env["PATH"] = os.pathsep.join(front + [base.get("PATH") or DEFAULT_PATH])
    if venv.is_dir():
        env["VIRTUAL_ENV"] = str(venv)
    if process == WEB:
        env["PORT"] = str(settings.get("web_port") or 8000)
    env["BRIDGE_RELEASE"] = str(release)
    return env


def run_process(layout: Layout, settings: dict, name: str, slot: str | None = None) -> None:
    """A unit's ExecStart: exec the process's command in `current` (web in a front slot: the slot's
    release, on the slot's port), with the app's environment."""
    entry = front.slot_of(layout, slot) if slot is not None else {"release": layout.current_release()}
    if entry["release"] is None:
        raise AppError("no release is deployed under %s yet" % layout.root)
    release = layout.release(entry["release"])
    command = services(release_processes(release, settings)).get(name)
    if command is None:
        raise AppError("release %s has no process %r" % (entry["release"], name))
    os.chdir(str(release))
    env = app_env(layout, release, settings, dict(os.environ), name)
    if slot is not None:
        env["PORT"] = str(entry["port"])
    os.execve("/bin/sh", ["sh", "-c", command], env)


# ---------------------------------------------------------------- systemd


def launcher_argv(layout: Layout, process: str) -> list:
    """The ExecStart of a process's unit: apps.py builds its environment from the release, then execs it."""
    return [sys.executable, "-E", "-S", str(layout.apps), "--root", str(layout.root), "run", process]


def unit_text(layout: Layout, settings: dict, process: str, systemd: Systemd) -> str:
    """The unit of one process: the launcher runs it in `current`; restarted when it fails."""
    description = "bridge app %s: %s (%s)" % (settings.get("workspace") or "app", process, layout.root)
    return "\n".join([
        "[Unit]",
        "Description=" + description.replace("%", "%%").replace("\n", " "),
        "After=network.target",
        "",
        "[Service]",
        "Type=simple",
        "ExecStart=" + " ".join(unit_quote(a) for a in launcher_argv(layout, process)),
        "Restart=on-failure",
        "RestartSec=1",
        "TimeoutStopSec=15",
        "SyslogIdentifier=" + safe_name("%s-%s" % (settings.get("workspace") or "app", process)),
        "",
        "[Install]",
        "WantedBy=" + systemd.target,
        "",
    ])


def installed_processes(layout: Layout) -> list:
    """The processes whose units this root installed (recorded in .bridge/units.json)."""
    try:
        return list(json.loads(layout.units_file.read_text()))
    except (OSError, ValueError):
        return []


def check_supervisor(settings: dict) -> None:
    """Before the switch: systemd runs here, and deploy.front can be honoured (AppError otherwise)."""
    Systemd.here().ensure_available()
    front.wanted(settings)


def install_units(layout: Layout, settings: dict, processes: dict, systemd: Systemd, behind_front: bool = False) -> str:
    """Write (and enable) a unit per process, remove those of processes gone; reload systemd on change.

    Web behind the front has no unit of its own here: front.py runs it in its slots."""
    systemd.ensure_available()
    systemd.unit_dir.mkdir(parents=True, exist_ok=True)
    plain = [p for p in processes if not (behind_front and p == WEB)]
    gone = [p for p in installed_processes(layout)
            if p not in plain and (systemd.unit_dir / unit_name(settings, p)).is_file()]
    if gone:
        systemd.run("disable", "--now", *[unit_name(settings, p) for p in gone])
    changed = bool(gone)
    for process in gone:
        (systemd.unit_dir / unit_name(settings, process)).unlink(missing_ok=True)
    for process in plain:
        path, text = systemd.unit_dir / unit_name(settings, process), unit_text(layout, settings, process, systemd)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            changed = True
    layout.units_file.write_text(json.dumps(sorted(processes)))
    if changed:
        systemd.check("daemon-reload")
        if plain:
            systemd.check("enable", *[unit_name(settings, p) for p in plain])
    return "units: " + ", ".join(unit_name(settings, p) for p in sorted(plain))


def units_of(layout: Layout, settings: dict, process: str) -> list:
    """The units that run one process: web behind the front is its serving slot and the front."""
    if process == WEB and front.in_use(layout):
        return front.active_units(layout, settings) or [unit_name(settings, process)]
    return [unit_name(settings, process)]


def selected(layout: Layout, process: str | None) -> list:
    names = installed_processes(layout)
    if process is not None and process not in names:
        raise AppError("no process %r here; this app runs: %s" % (process, ", ".join(names) or "none"))
    return [p for p in names if process in (None, p)]


def restart(layout: Layout, settings: dict, systemd: Systemd, process: str | None = None,
            action: str = "restart") -> str:
    """systemctl restart|start|stop the app's units (one, or all of them); a restart of web behind the
    front starts it beside the serving one and switches (no request refused)."""
    names = selected(layout, process)
    swap = action == "restart" and WEB in names and front.in_use(layout)
    units = [u for p in names if not (swap and p == WEB) for u in units_of(layout, settings, p)]
    if units and action != "stop":
        systemd.run("reset-failed", *units)  # a unit that crash-looped past systemd's start limit starts again
    if units:
        systemd.check(action, *units)
    notes = ["%s: %s" % (action, ", ".join(units))] if units or not swap else []
    if swap:
        notes.append(front.start_slot(layout, settings, layout.current_release() or "", launcher_argv(layout, WEB),
                                      systemd))
        notes.append(checked_switch(layout, settings, systemd))
    return "; ".join(notes)


def checked_switch(layout: Layout, settings: dict, systemd: Systemd) -> str:
    """Switch the front to the started slot once an HTTP healthcheck passes there; else stop that slot."""
    check = settings.get("healthcheck") or ""
    try:
        if check.startswith("/"):
            healthcheck(check, settings, lambda: False, front.pending_port(layout))
        return front.switch(layout, settings, systemd)
    except AppError:
        front.abandon(layout, settings, systemd)
        raise


def activate(layout: Layout, settings: dict, release: str, web: str = "switch") -> str:
    """Make the processes of `release` (just made current) run: units for its Procfile, then a restart.

    Behind the front, web starts in a slot beside the serving one; `web` says how far to go:
    "switch" (the front to it, rollback), "start" (a deploy's healthcheck and switch follow), "keep"
    (the serving slot stays: a failed deploy going back)."""
    processes = services(release_processes(layout.release(release), settings))
    if not processes and not installed_processes(layout):
        return ""
    systemd = Systemd.here()
    behind = WEB in processes and front.wanted(settings)
    if not behind:
        front.teardown(layout, settings, systemd)
    install_units(layout, settings, processes, systemd, behind)
    units = [unit_name(settings, p) for p in processes if not (behind and p == WEB)]
    notes = []
    if units:
        systemd.run("reset-failed", *units)
        systemd.check("restart", *units)
        notes.append("restart: " + ", ".join(units))
    if behind and web != "keep":
        notes.append(front.start_slot(layout, settings, release, launcher_argv(layout, WEB), systemd))
        if web == "switch":
            notes.append(checked_switch(layout, settings, systemd))
    elif WEB in processes and not behind and (settings.get("front") or "auto") == "auto":
        notes.append(front.NO_NGINX_NOTE)
    return "; ".join(notes)


# ---------------------------------------------------------------- healthcheck


def healthcheck(check: str, settings: dict, run_command: Callable[[], bool], port: int | None = None) -> None:
    """Poll the running release until it answers: an HTTP path on 127.0.0.1:port (web_port unless
    web's new slot listens elsewhere), or a command.

    Gives it `deploy.healthcheck_timeout` seconds (the app needs time to boot); raises AppError.
    """
    deadline = time.monotonic() + float(settings.get("healthcheck_timeout") or 30)
    probe = http_probe(check, port or int(settings.get("web_port") or 8000)) if check.startswith("/") else None
    last = ""
    while True:
        if probe is not None:
            ok, last = probe()
        else:
            ok, last = run_command(), "%r kept failing" % check
        if ok:
            return
        if time.monotonic() > deadline:
            raise AppError("healthcheck failed for %gs: %s" % (float(settings.get("healthcheck_timeout") or 30),
                                                               last))
        time.sleep(0.5)


def http_probe(path: str, port: int) -> Callable[[], tuple]:
    """A GET of the path; (ok, what happened). Any status below 400 is healthy."""
    import urllib.error
    import urllib.request

    url = "http://127.0.0.1:%d%s" % (port, path)

    def probe() -> tuple:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return True, "GET %s: %d" % (url, answer.status)
        except urllib.error.HTTPError as e:
            return False, "GET %s answered %d" % (url, e.code)
        except (OSError, ValueError) as e:
            return False, "GET %s: %s" % (url, getattr(e, "reason", e))

    return probe


# ---------------------------------------------------------------- ps, logs


def ps(layout: Layout, settings: dict) -> list:
    """One row per process: state, pid, release (the cwd of its pid), since, restarts."""
    names = installed_processes(layout)
    if not names:
        return []
    unit = {name: units_of(layout, settings, name)[0] for name in names}
    out = Systemd.here().check("show", "--timestamp=unix", "--property=Id,ActiveState,SubState,MainPID,"
                               "ExecMainStartTimestamp,NRestarts", *unit.values())
    blocks = [dict(line.split("=", 1) for line in block.splitlines() if "=" in line) for block in out.split("\n\n")]
    by_unit = {b.get("Id"): b for b in blocks}
    return [process_row(name, by_unit.get(unit[name], {}), unit[name]) for name in names]


def process_row(name: str, props: dict, unit: str) -> dict:
    pid = int(props.get("MainPID") or 0)
    since = props.get("ExecMainStartTimestamp", "").lstrip("@")
    return {"process": name, "unit": unit, "state": "%s/%s" % (props.get("ActiveState", "?"), props.get("SubState", "?")),
            "pid": pid or None, "release": pid_release(pid), "restarts": int(props.get("NRestarts") or 0),
            "since": iso_time(float(since)) if pid and since else None}


def pid_release(pid: int) -> str | None:
    """The release a process runs in: the name of its working directory."""
    if not pid:
        return None
    try:
        return os.path.basename(os.readlink("/proc/%d/cwd" % pid))
    except OSError:
        return None


def iso_time(seconds: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat(timespec="seconds")


def logs_argv(layout: Layout, settings: dict, process: str | None, lines: int, follow: bool) -> list:
    units = [u for p in selected(layout, process)
             for u in (front.journal_units(settings) if p == WEB and front.in_use(layout) else [unit_name(settings, p)])]
    if not units:
        raise AppError("this app runs no processes here (no Procfile or deploy.processes deployed)")
    systemd = Systemd.here()
    selectors = [arg for unit in units for arg in ("-u", unit)]
    return systemd.argv("journalctl", "--no-pager", "-o", "short-iso", "-n", str(lines),
                        *(["-f"] if follow else []), *selectors)


# ---------------------------------------------------------------- the client's entry point


def load_settings(layout: Layout) -> dict:
    try:
        return json.loads(layout.settings.read_text())
    except (OSError, ValueError):
        return {}


def parse_args(argv: list) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="apps.py", description="bridge app processes and config")
    parser.add_argument("--root", required=True)
    parser.add_argument("command", choices=("run", "ps", "logs", "start", "stop", "restart",
                                            "config-list", "config-set", "config-unset"))
    parser.add_argument("names", nargs="*", help="a process (run, logs, start/stop/restart) or config keys")
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("-f", action="store_true")
    parser.add_argument("--no-restart", action="store_true")
    return parser.parse_args(argv)


def main(argv: list | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    layout = Layout(Path(args.root))
    settings = load_settings(layout)
    try:
        return dispatch(layout, settings, args)
    except ServerError as e:
        print(json.dumps({"error": str(e)}))
        return 1


def dispatch(layout: Layout, settings: dict, args: argparse.Namespace) -> int:
    process = args.names[0] if args.names else None
    if args.command == "run":
        run_process(layout, settings, process or WEB, args.names[1] if len(args.names) > 1 else None)
    if args.command == "logs":
        argv = logs_argv(layout, settings, process, args.n, args.f)
        os.execvpe(argv[0], argv, Systemd.here().env())
    if args.command == "ps":
        print(json.dumps({"processes": ps(layout, settings)}))
    elif args.command in ("start", "stop", "restart"):
        print(json.dumps({"done": restart(layout, settings, Systemd.here(), process, args.command)}))
    else:
        print(json.dumps(change_config(layout, settings, args)))
    return 0


def change_config(layout: Layout, settings: dict, args: argparse.Namespace) -> dict:
    """config-list / config-set (KEY=VALUE pairs as JSON on stdin, never in argv) / config-unset KEY..."""
    config = read_config(layout)
    if args.command == "config-list":
        return {"config": config}
    if args.command == "config-set":
        values = json.loads(sys.stdin.read() or "{}")
        for key in values:
            check_config_key(key)
        config.update(values)
        changed = sorted(values)
    else:
        changed = [key for key in args.names if key in config]
        for key in changed:
            del config[key]
    write_config(layout, config)
    restarted = None
    if changed and not args.no_restart and installed_processes(layout):
        restarted = restart(layout, settings, Systemd.here())
    return {"changed": changed, "restarted": restarted}


if __name__ == "__main__":
    sys.exit(main())
