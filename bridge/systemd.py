"""systemd units for bridge's long-running processes (tunnel, hub, agent): start at boot, restart always."""
from __future__ import annotations

import shlex
from pathlib import Path

from bridge.errors import BridgeError

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


def install(text: str, name: str, path: Path | None, command: str) -> Path:
    """Write the unit (0644, as systemd expects) to `path`, default /etc/systemd/system/NAME.

    Raises BridgeError naming `command` (e.g. `bridge hub install`) when the folder is not writable.
    """
    target = path or UNIT_DIR / name
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(0o644)
    except PermissionError as e:
        raise BridgeError(f"cannot write {target}: permission denied",
                          hint=f"run it with sudo, or `{command} --print` and copy it yourself") from e
    return target
