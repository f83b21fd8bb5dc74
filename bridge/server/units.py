#!/usr/bin/env python3
"""systemd for the app's processes: the manager of this account (system for root, the user's with
lingering otherwise) and the names of the units bridge writes.

Runs on the server (stdlib, Python 3.9+) beside apps.py and front.py, which both supervise through it.
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

try:  # installed on the server: layout.py sits beside this file
    from layout import ServerError
except ImportError:  # imported from the bridge package
    from .layout import ServerError

START_WAIT = 30.0  # seconds for a user's service manager to come up after enable-linger


class AppError(ServerError):
    """An app operation cannot go on; the message says why and what to do, in one line."""


class Systemd:
    """systemctl/journalctl for this account: the system manager for root, the user's manager otherwise."""

    def __init__(self, user_mode: bool) -> None:
        self.user_mode = user_mode

    @classmethod
    def here(cls) -> "Systemd":
        return cls(os.geteuid() != 0)

    @property
    def unit_dir(self) -> Path:
        if self.user_mode:
            return Path(os.path.expanduser("~/.config/systemd/user"))
        return Path("/etc/systemd/system")

    @property
    def target(self) -> str:
        return "default.target" if self.user_mode else "multi-user.target"

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        if self.user_mode:
            env.setdefault("XDG_RUNTIME_DIR", "/run/user/%d" % os.geteuid())
        return env

    def argv(self, program: str, *args: str) -> list:
        return [program, *(["--user"] if self.user_mode else []), *args]

    def run(self, *args: str) -> subprocess.CompletedProcess:
        """systemctl ARGS; output captured."""
        return subprocess.run(self.argv("systemctl", *args), env=self.env(), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)

    def check(self, *args: str) -> str:
        proc = self.run(*args)
        if proc.returncode != 0:
            raise AppError("systemctl %s failed: %s" % (" ".join(args), (proc.stderr or proc.stdout).strip()))
        return proc.stdout

    def ensure_available(self) -> None:
        """Raise AppError unless systemd runs here (and, for a user, the user's manager with lingering)."""
        if not os.path.isdir("/run/systemd/system"):
            raise AppError("processes need systemd on the server, and this host does not run it "
                           "(/run/systemd/system is missing); deploy to a systemd host or remove the "
                           "Procfile / deploy.processes")
        if self.user_mode:
            self.ensure_lingering()

    def ensure_lingering(self) -> None:
        import pwd

        user = pwd.getpwuid(os.geteuid()).pw_name
        if not os.path.exists("/var/lib/systemd/linger/" + user):
            proc = subprocess.run(["loginctl", "enable-linger", user], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
            if proc.returncode != 0:
                raise AppError("user units of %r stop when its last session ends; lingering is off and "
                               "`loginctl enable-linger` was refused (%s): as root run `loginctl enable-linger %s`"
                               % (user, proc.stdout.strip(), user))
        socket = Path(self.env()["XDG_RUNTIME_DIR"]) / "systemd" / "private"
        deadline = time.monotonic() + START_WAIT
        while not socket.exists():
            if time.monotonic() > deadline:
                raise AppError("the user service manager of %r is not running (%s missing)" % (user, socket))
            time.sleep(0.1)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", text).strip("-") or "app"


def unit_name(settings: dict, process: str) -> str:
    """`bridge-<workspace>-<process>.service`: ps and logs find an app's units by its name."""
    return "bridge-%s-%s.service" % (safe_name(settings.get("workspace") or "app"), process)


def unit_quote(word: str) -> str:
    """One word of a unit's ExecStart, quoted for systemd (it splits, unescapes and expands % and $)."""
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return '"%s"' % escaped.replace("\n", "\\n")
