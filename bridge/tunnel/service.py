"""`bridge tunnel up/status/down/install`: the glue between config, the supervisor and the state file."""
from __future__ import annotations

import getpass
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from bridge import systemd
from bridge.config import Config
from bridge.errors import BridgeError, ConfigError
from bridge.procs import pid_alive
from bridge.tunnel import state as st
from bridge.tunnel.events import Event, Stopped
from bridge.tunnel.forwards import parse_forwards
from bridge.tunnel.pipe import Log
from bridge.tunnel.supervisor import Plan, Supervisor


def plan_for(config: Config) -> Plan:
    """The tunnel described by `tunnel:` in bridge.yaml; raises ConfigError when it names no relay or forward."""
    from bridge.ssh.settings import for_remote

    tunnel = config.tunnel
    if not tunnel.relay:
        raise ConfigError("bridge.yaml has no `tunnel.relay`",
                          hint="add `tunnel: {relay: NAME, forwards: [\"2222:localhost:22\"]}` naming a remote")
    settings = for_remote(config, config.remotes[tunnel.relay])
    return Plan(settings, parse_forwards(tunnel.forwards), tunnel.keepalive, tunnel.backoff_cap,
                trust_hint=f"bridge test --trust {tunnel.relay}")


def up(config: Config, stop: threading.Event, log: Log) -> Iterator[tuple[Event, bool]]:
    """Run the tunnel until `stop`; yields (event, changed) and keeps the state file current.

    Raises BridgeError only for what retrying cannot fix: bad config, or a tunnel already running here.
    """
    plan = plan_for(config)
    path = st.state_path(config.workspace)
    _refuse_second_instance(path)
    current = st.TunnelState(pid=os.getpid(), relay=plan.settings.describe(),
                             forwards=[st.ForwardState(str(f)) for f in plan.forwards])
    for event in Supervisor(plan, stop, log).run():
        changed = current.apply(event)
        st.save(path, current)
        yield event, changed


def _refuse_second_instance(path: Path) -> None:
    running = st.load(path)
    if running and running.pid != os.getpid() and running.state != "stopped" and pid_alive(running.pid):
        raise BridgeError(f"a tunnel for this workspace is already running (pid {running.pid})",
                          hint="`bridge tunnel status` shows it; `bridge tunnel down` stops it")


def status(config: Config) -> dict | None:
    """The running (or last) tunnel's state, with `running` telling whether its process is alive."""
    current = st.load(st.state_path(config.workspace))
    if current is None:
        return None
    running = current.state != "stopped" and pid_alive(current.pid)
    if not running and current.state != "stopped":  # killed: its forwards died with it
        current.apply(Stopped())
    return {**current.to_dict(), "running": running}


@dataclass(frozen=True)
class DownResult:
    """Which process `down` stopped, if any was running."""

    pid: int | None
    stopped: bool


def down(config: Config, timeout: float = 15.0) -> DownResult:
    """SIGTERM the running tunnel and wait for it to cancel its forwards and exit."""
    current = st.load(st.state_path(config.workspace))
    if current is None or current.state == "stopped" or not pid_alive(current.pid):
        return DownResult(None, False)
    os.kill(current.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(current.pid) or _reaped_state(config) == "stopped":
            return DownResult(current.pid, True)
        time.sleep(0.05)
    raise BridgeError(f"the tunnel (pid {current.pid}) did not stop within {timeout:g}s",
                      hint=f"kill {current.pid}")


def _reaped_state(config: Config) -> str | None:
    current = st.load(st.state_path(config.workspace))
    return current.state if current else None


def unit_for(config: Config, user: str | None = None, python: Path | None = None) -> tuple[str, str]:
    """(unit name, unit text) for this workspace, sandboxed, run by `python` (default: this interpreter).

    Checks the tunnel config first, then that `user` can run `python` with bridge (BridgeError if not).
    """
    plan_for(config)
    if config.root is None:
        raise ConfigError("no bridge.yaml here", hint="run `bridge tunnel install` inside the workspace")
    account, interpreter = user or getpass.getuser(), python or Path(sys.executable)
    systemd.check_runnable(account, interpreter, "bridge tunnel install")
    text = systemd.render_unit(description=f"bridge reverse tunnel for {config.workspace}",
                               argv=[str(interpreter), "-m", "bridge", "tunnel", "up"], user=account,
                               workdir=config.root, sandbox=systemd.hardening([systemd.unit_state_dir(account)]))
    return unit_name(config.workspace), text


def unit_name(workspace: str) -> str:
    """One unit per workspace, so two tunnels on one box do not overwrite each other."""
    return f"bridge-tunnel-{workspace or 'default'}.service"


def install(config: Config, user: str | None, path: Path | None, python: Path | None = None) -> Path:
    """Write the unit (default /etc/systemd/system/NAME) and make the state folder it may write, owned by `user`;
    raises BridgeError when the folder is not writable or `user` cannot run `python`."""
    name, text = unit_for(config, user, python)
    systemd.make_owned(systemd.unit_state_dir(user or getpass.getuser()), user or getpass.getuser())
    return systemd.install(text, name, path, "bridge tunnel install")
