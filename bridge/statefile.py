"""Small JSON state files a long-running process keeps (tunnel, agent) so `status` can show it.

They live in the state dir (not the runtime dir): a systemd service has no XDG_RUNTIME_DIR while the
user's login shell does, but both share HOME, so both find the same file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path


def save_json(path: Path, data: dict) -> None:
    """Write atomically (temp file + rename): `status` never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def load_json(path: Path) -> dict | None:
    """The last data written, or None if none was (or the file is unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
