"""Resolve how to reach a remote: its URL, bridge.yaml and ~/.ssh/config, flattened into one value."""
from __future__ import annotations

import getpass
import math
import os
from pathlib import Path
from typing import NamedTuple

from bridge import paths
from bridge.config import Config, Remote
from bridge.errors import ConfigError
from bridge.targets import Endpoint, parse_url

DEFAULT_IDENTITIES = ("id_ed25519", "id_ecdsa", "id_rsa")


class HubRoute(NamedTuple):
    """How a hub:// remote's byte stream is reached: which hub, which agent, for which workspace."""

    host: str
    port: int
    agent: str
    workspace: str = ""


class SSHSettings(NamedTuple):
    """Everything the SSH layer needs for one hop; `via` is the hop before it (nested allowed)."""

    host: str  # the name the user wrote (alias or address), for messages
    hostname: str  # the address to connect to; known_hosts is checked against it, as OpenSSH does
    port: int
    user: str
    identities: tuple[Path, ...] = ()
    via: "SSHSettings | None" = None
    connect_timeout: float = 10.0
    keepalive: float = 15.0
    explicit_identity: bool = False
    proxy_command: str | None = None  # ~/.ssh/config ProxyCommand, tokens unexpanded (stream.py runs it)
    hub: HubRoute | None = None  # the connection's bytes come through this hub's agent, not a TCP dial

    @property
    def known_hosts_name(self) -> str:
        """The name OpenSSH files this host's key under: `host` or `[host]:port`; `hub://HUB:PORT/AGENT`
        for an agent's sshd, a name no TCP host can share."""
        if self.hub is not None:
            return f"hub://{self.hub.host}:{self.hub.port}/{self.hub.agent}"
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    def describe(self) -> str:
        """`user@host:port`, for messages."""
        if self.hub is not None:
            return f"{self.user}@{self.hub.agent} (via hub {self.hub.host}:{self.hub.port})"
        return f"{self.user}@{self.host}:{self.port}"

    def key(self) -> tuple:
        """What makes two settings the same connection (for reuse)."""
        return (self.hostname, self.port, self.user, self.identities, self.proxy_command,
                self.via.key() if self.via else None, self.hub)


def for_remote(config: Config, remote: Remote, _depth: int = 0) -> SSHSettings:
    """Settings for an ssh:// remote, following `via:` remotes and ~/.ssh/config ProxyJump."""
    if _depth > 8:
        raise ConfigError(f"remote `{remote.name}`: `via` chain is longer than 8 hops (a loop?)",
                          hint="check the `via:` keys in bridge.yaml")
    endpoint = parse_url(remote.url, where=f"remotes.{remote.name}.url")
    if endpoint.is_local:
        raise ConfigError(f"remote `{remote.name}` is local, not ssh", hint="use the local runner")
    via = for_remote(config, config.remotes[remote.via], _depth + 1) if remote.via else None
    identity = (_expand(remote.identity),) if remote.identity else ()
    timeout = checked_timeout(remote.connect_timeout, f"remotes.{remote.name}.connect_timeout in bridge.yaml")
    if endpoint.scheme == "hub":
        return _through_hub(endpoint, identity, config.workspace, timeout)
    return from_endpoint(endpoint, identities=identity, via=via, connect_timeout=timeout)


def checked_timeout(value: object, where: str) -> float:
    """A connect timeout the SSH layer can wait on: a positive, finite number of seconds.

    Checked here too, not only when the config loads: a keeper serves configs from any source, and
    a bad value there must fail its own request, not hang it. Raises ConfigError naming `where`.
    """
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = math.nan
    if not (0 < seconds < math.inf):
        raise ConfigError(f"{where}: {value!r} is not a timeout", hint="give a number of seconds above 0, like 10")
    return seconds


def from_endpoint(endpoint: Endpoint, *, identities: tuple[Path, ...] = (), via: SSHSettings | None = None,
                  connect_timeout: float = 10.0, _depth: int = 0) -> SSHSettings:
    """Fill what the URL leaves open from ~/.ssh/config (HostName, Port, User, IdentityFile, ConnectTimeout,
    ProxyJump, ProxyCommand; a jump host, from bridge.yaml or ProxyJump, wins over a ProxyCommand)."""
    looked_up = _ssh_config_lookup(endpoint.host)
    config_ids = tuple(_expand(p) for p in looked_up.get("identityfile", []))
    if via is None and looked_up.get("proxyjump") and _depth < 8:
        via = _jump(looked_up["proxyjump"], _depth)
    if "connecttimeout" in looked_up:
        connect_timeout = checked_timeout(looked_up["connecttimeout"], "ConnectTimeout in ~/.ssh/config")
    return SSHSettings(
        host=endpoint.host,
        hostname=looked_up.get("hostname", endpoint.host),
        port=endpoint.port or int(looked_up.get("port", 22)),
        user=endpoint.user or looked_up.get("user") or getpass.getuser(),
        identities=identities or config_ids,
        via=via,
        connect_timeout=connect_timeout,
        explicit_identity=bool(identities or config_ids),
        proxy_command=None if via is not None else looked_up.get("proxycommand"),
    )


def _through_hub(endpoint: Endpoint, identities: tuple[Path, ...], workspace: str, timeout: float) -> SSHSettings:
    """A hub:// remote: the agent's own sshd, reached through the hub (no ~/.ssh/config applies)."""
    from bridge.hublink import DEFAULT_PORT

    route = HubRoute(endpoint.host, endpoint.port or DEFAULT_PORT, endpoint.agent, workspace)
    return SSHSettings(host=endpoint.agent, hostname=endpoint.agent, port=22, user=endpoint.user or getpass.getuser(),
                       identities=identities, connect_timeout=timeout, explicit_identity=bool(identities), hub=route)


def _jump(spec: str, depth: int) -> SSHSettings | None:
    """ProxyJump `[user@]host[:port][,next…]`: the last entry is the hop right before the target."""
    if spec.lower() == "none":
        return None
    via = None
    for hop in spec.split(","):
        endpoint = parse_url(f"ssh://{hop.strip()}", where="ProxyJump in ~/.ssh/config")
        via = from_endpoint(endpoint, via=via, _depth=depth + 1)
    return via


def _ssh_config_lookup(host: str) -> dict:
    """What ~/.ssh/config says for `host`; an unreadable or missing file counts as empty."""
    path = paths.ssh_dir() / "config"
    if not path.is_file():
        return {}
    from bridge.ssh.slim_import import slim_paramiko_import

    slim_paramiko_import()
    import paramiko

    class RawProxyCommand(paramiko.SSHConfig):
        """Leaves ProxyCommand's %h %p %r to stream.py, which expands them from the final settings
        (the URL may set port and user) and shell-quotes them; paramiko substitutes them raw."""

        TOKENS_BY_CONFIG_KEY = {k: v for k, v in paramiko.SSHConfig.TOKENS_BY_CONFIG_KEY.items()
                                if k != "proxycommand"}

    try:
        found = RawProxyCommand.from_path(str(path)).lookup(host)
    except Exception as e:  # paramiko raises several types for bad syntax
        raise ConfigError(f"{path}: cannot read: {e}", hint="fix the ssh config syntax") from e
    return dict(found)


def _expand(value: str) -> Path:
    return Path(os.path.expanduser(os.path.expandvars(value)))


def default_identities() -> tuple[Path, ...]:
    """The keys OpenSSH tries when none is configured."""
    return tuple(paths.ssh_dir() / name for name in DEFAULT_IDENTITIES)
