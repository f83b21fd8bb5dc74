"""systemd units for bridge's long-running processes (tunnel, hub, agent): start at boot, restart always."""
from __future__ import annotations

import shlex
from pathlib import Path

UNIT_DIR = Path("/etc/systemd/system")


def render_unit(*, description: str, argv: list[str], user: str, workdir: Path | None = None) -> str:
    """The unit text: a system unit (multi-user.target) run as `user`, so it starts at boot without a login."""
    return "\n".join([
        "[Unit]",
        f"Description={description}",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"User={user}",
        *([f"WorkingDirectory={workdir}"] if workdir else []),
        f"ExecStart={shlex.join(argv)}",
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
    """Write the unit file (0644, as systemd expects); raises PermissionError when the folder is not writable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o644)
    return path
