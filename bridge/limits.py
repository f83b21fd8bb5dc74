"""The allowed range of every numeric setting: one table for bridge.yaml, `BRIDGE_*` and flags alike.

A value outside it is refused when it is read, before any connection or server state exists
(`connect_timeout: -1` used to wedge the keeper; `forks: 0` and `--timeout -1` were silently
taken as 1 and "no timeout"). Import-free, so the warm `bridge exec` path checks its flags too.
"""
from __future__ import annotations

from bridge.errors import UsageError

DAY = 86400
# setting -> (lowest, highest, whether the lowest itself is allowed); NaN and infinity never are
RANGES: dict[str, tuple[float, float, bool]] = {
    "remotes.*.connect_timeout": (0, 3600, False),
    "exec.timeout": (0, 30 * DAY, True),  # 0: none
    "exec.forks": (1, 1024, True),  # threads in one process
    "exec.sandbox.cpus": (0.01, 1024, True),
    "exec.sandbox.pids": (1, 4194304, True),  # the kernel's highest pid_max
    "exec.sandbox.pool": (0, 64, True),
    "deploy.keep_releases": (1, 1000, True),  # `current` itself is one of them
    "tunnel.keepalive": (0, 3600, False),
    "tunnel.backoff_cap": (0, DAY, False),
    "replay.speed": (0, 1000, False),  # `bridge replay` flags
    "replay.max_idle": (0, DAY, True),
}
# byte sizes, written like 512m or 1g
SIZES: dict[str, tuple[int, int]] = {
    "exec.sandbox.memory": (6 * 2**20, 2**40),  # Docker refuses a memory limit under 6 MiB
    "exec.sandbox.tmpfs": (2**20, 2**40),
    "exec.sandbox.output_limit": (1024, 2**40),
}
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def setting_key(dotted: str) -> str:
    """The RANGES/SIZES key of a setting's dotted path: `remotes.prod.x` is `remotes.*.x`."""
    parts = dotted.split(".")
    return f"remotes.*.{parts[2]}" if len(parts) == 3 and parts[0] == "remotes" else dotted


def out_of_range(key: str, value: float) -> str | None:
    """None when `value` is allowed for setting `key`, else the allowed range in words."""
    if key not in RANGES:
        return None
    low, high, low_allowed = RANGES[key]
    if (low <= value if low_allowed else low < value) and value <= high:
        return None
    words = f"from {_num(low)} to {_num(high)}" if low_allowed else f"more than {_num(low)} and at most {_num(high)}"
    return words + (" (0: none)" if key == "exec.timeout" else "")


def check_option(name: str, setting: str, value: float | None) -> None:
    """Refuse a flag (`--timeout -1`) or API argument outside the range of its setting: UsageError, exit 2."""
    allowed = None if value is None else out_of_range(setting, value)
    if allowed:
        raise UsageError(f"{name} {value:g} is out of range", hint=f"give {name} a number {allowed}")


def size_bytes(value: object) -> int | None:
    """Bytes from `512m`, `1g`, `65536`; None when `value` is not a size."""
    import re  # here: only sandbox settings need it, never the warm exec path

    match = re.fullmatch(r"\s*(\d+)\s*([bkmg]?)b?\s*", str(value).lower())
    return int(match.group(1)) * _UNITS[match.group(2)] if match else None


def bad_size(key: str, value: object) -> str | None:
    """None when `value` is a size allowed for setting `key`, else what it must be, in words."""
    low, high = SIZES[key]
    size = size_bytes(value)
    if size is not None and low <= size <= high:
        return None
    return f"a size from {_human(low)} to {_human(high)}, like 512m or 1g"


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def _human(size: int) -> str:
    for unit, factor in (("t", 2**40), ("g", 2**30), ("m", 2**20), ("k", 2**10)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)
