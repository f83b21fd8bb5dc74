"""`tunnel.forwards` entries: `[bind_addr:]relay_port:local_host:local_port`, as in `ssh -R`."""
from __future__ import annotations

from dataclasses import dataclass

from bridge.errors import ConfigError

# OpenSSH's client sends "localhost" when no bind address is given: the relay binds its loopback only.
DEFAULT_BIND = "localhost"


@dataclass(frozen=True)
class Forward:
    """One remote forward: connections to `bind:relay_port` on the relay reach `local_host:local_port` here."""

    relay_port: int
    local_host: str
    local_port: int
    bind: str = DEFAULT_BIND

    def __str__(self) -> str:
        return f"{self.bind}:{self.relay_port} -> {self.local_host}:{self.local_port}"


def parse_forward(spec: str) -> Forward:
    """Parse one entry; raises ConfigError naming the entry and the expected form."""
    parts = _split(spec.strip())
    if len(parts) not in (3, 4):
        raise _bad(spec, "expected relay_port:local_host:local_port or bind_addr:relay_port:local_host:local_port")
    bind = parts[0] if len(parts) == 4 else DEFAULT_BIND
    relay_port, local_host, local_port = parts[-3:]
    return Forward(_port(relay_port, spec), local_host, _port(local_port, spec), bind or DEFAULT_BIND)


def parse_forwards(specs: tuple[str, ...]) -> tuple[Forward, ...]:
    """Parse all entries; an empty list is a ConfigError (a tunnel with nothing to forward)."""
    if not specs:
        raise ConfigError("`tunnel.forwards` is empty: nothing to forward",
                          hint='add e.g. forwards: ["2222:localhost:22"] under `tunnel:` in bridge.yaml')
    return tuple(parse_forward(spec) for spec in specs)


def _split(spec: str) -> list[str]:
    """Split on `:` but keep `[v6:addr]` whole."""
    parts, current, depth = [], "", 0
    for char in spec:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == ":" and depth == 0:
            parts.append(current.strip("[]"))
            current = ""
        else:
            current += char
    return parts + [current.strip("[]")]


def _port(text: str, spec: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise _bad(spec, f"`{text}` is not a port (1-65535)")
    return int(text)


def _bad(spec: str, why: str) -> ConfigError:
    return ConfigError(f"tunnel.forwards: cannot read `{spec}`: {why}", hint='write e.g. "2222:localhost:22"')
