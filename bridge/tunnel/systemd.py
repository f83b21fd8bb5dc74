"""A systemd unit that runs `bridge tunnel up` at boot, without anyone logged in, and restarts it always."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

UNIT_DIR = Path("/etc/systemd/system")


def unit_name(workspace: str) -> str:
    """One unit per workspace, so two tunnels on one box do not overwrite each other."""
    return f"bridge-tunnel-{workspace or 'default'}.service"


def render_unit(*, workspace: Path, user: str, name: str, python: str = sys.executable) -> str:
    """The unit text: a system unit (multi-user.target) run as `user`, so it starts at boot without a login."""
    exec_start = shlex.join([python, "-m", "bridge", "tunnel", "up"])
    return "\n".join([
        "[Unit]",
        f"Description=bridge reverse tunnel for {name}",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"User={user}",
        f"WorkingDirectory={workspace}",
        f"ExecStart={exec_start}",
        # bridge reconnects by itself; Restart= only covers a crash of the process or a bad config
        "Restart=always",
        "RestartSec=5",
        "KillSignal=SIGTERM",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def write_unit(text: str, path: Path) -> Path:
    """Write the unit file (0644, as systemd expects)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o644)
    return path
