"""Where bridge keeps files on this machine, per the XDG base-directory spec."""
from __future__ import annotations

import os
from pathlib import Path


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value and os.path.isabs(value) else Path.home() / fallback


def config_dir() -> Path:
    """`$XDG_CONFIG_HOME/bridge`: per-user defaults (config.yaml)."""
    return _xdg("XDG_CONFIG_HOME", ".config") / "bridge"


def state_dir() -> Path:
    """`$XDG_STATE_HOME/bridge`: audit log, recordings, tunnel state."""
    return _xdg("XDG_STATE_HOME", ".local/state") / "bridge"


def data_dir() -> Path:
    """`$XDG_DATA_HOME/bridge`: the embedded `local://` deploy targets."""
    return _xdg("XDG_DATA_HOME", ".local/share") / "bridge"


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/bridge` (0700): parsed config files, safe to delete at any time."""
    return _xdg("XDG_CACHE_HOME", ".cache") / "bridge"


def runtime_dir() -> Path:
    """`$XDG_RUNTIME_DIR/bridge` (0700): sockets of the connection keeper and the tunnel.

    Falls back to a per-uid folder under /tmp when no runtime dir is set (cron, su).
    """
    base = os.environ.get("XDG_RUNTIME_DIR")
    root = Path(base) / "bridge" if base and os.path.isabs(base) else Path(f"/tmp/bridge-{os.getuid()}")
    return root


def ensure_private_dir(path: Path) -> Path:
    """Create `path` with mode 0700 and refuse one owned by someone else."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.getuid():
        from bridge.errors import BridgeError

        raise BridgeError(f"{path} belongs to uid {st.st_uid}, not you", hint="remove it or set XDG_RUNTIME_DIR")
    os.chmod(path, 0o700)
    return path


def ssh_dir() -> Path:
    """`~/.ssh`, where known_hosts and the user's ssh config live."""
    return Path.home() / ".ssh"
