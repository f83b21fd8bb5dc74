"""Remote URLs and target names: which hosts a command means."""
from __future__ import annotations

import re
from typing import NamedTuple

from bridge.config import Config, Remote
from bridge.errors import ConfigError, UsageError

_SSH_URL = re.compile(r"^ssh://(?:(?P<user>[^@/\s]+)@)?(?P<host>\[[^\]]+\]|[^:/\s]+)(?::(?P<port>\d+))?(?P<path>/.*)?$")
_SCP = re.compile(r"^(?:(?P<user>[^@/:\s]+)@)?(?P<host>\[[^\]]+\]|[^:/\[\s]+):(?P<path>(?!//).*)$")
_ALIAS = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>[A-Za-z0-9_.\-]+)$")
_HUB_URL = re.compile(r"^hub://(?:(?P<user>[^@/\s]+)@)?(?P<host>\[[^\]]+\]|[^:/\s]+)(?::(?P<port>\d+))?"
                      r"/(?P<agent>[A-Za-z0-9_.\-]+)(?P<path>/.*)?$")


class Endpoint(NamedTuple):
    """A parsed remote URL. `host` may be a ~/.ssh/config alias; `port`/`user` None mean "ask ssh config"."""

    scheme: str  # "ssh", "local" or "hub" (an SSH remote whose connection an agent carries through a hub)
    path: str = ""
    host: str = ""  # for hub: the hub's address
    user: str | None = None
    port: int | None = None  # for hub: the hub's port
    agent: str = ""  # for hub: the agent's name there

    @property
    def is_local(self) -> bool:
        return self.scheme == "local"

    def display(self) -> str:
        """A short human form, `user@host:port`, for tables and log prefixes."""
        if self.is_local:
            return f"local:{self.path}"
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        if self.scheme == "hub":
            return f"{user}{self.agent} via hub {self.host}{port}"
        return f"{user}{self.host}{port}"


def parse_url(url: str, where: str = "url") -> Endpoint:
    """Parse `ssh://[user@]host[:port]/abs/path`, `[user@]host:/path`, an ssh alias, `local:///abs/path`,
    or `hub://[user@]HUB[:PORT]/AGENT/abs/path`.

    Raises ConfigError naming `where` when the URL has none of these forms.
    """
    url = url.strip()
    if url.startswith("local://"):
        path = url[len("local://"):]
        if not path.startswith("/"):
            raise ConfigError(f"{where}: `{url}` needs an absolute path", hint="write local:///abs/path (three slashes)")
        return _checked(Endpoint("local", path=path), url, where)
    if url.startswith("hub://"):
        return _hub_endpoint(url, where)
    for pattern in (_SSH_URL, _SCP, _ALIAS):
        match = pattern.match(url)
        if match:
            return _checked(_endpoint(match, url, where), url, where)
    raise ConfigError(f"{where}: cannot read `{url}` as a remote URL",
                      hint="use ssh://user@host:port/abs/path, user@host:/path, an ssh alias or local:///path")


def has_parent_step(path: str) -> bool:
    """True when `path` climbs with `..`: such remote paths are refused, not normalised.

    Normalising `/srv/app/../x` to `/srv/x` is what the text says but not what the server does
    when a step is a symlink (`/srv/link/..` is the parent of the link's target): bridge would
    show one folder while sh enters, deploys into and prunes releases in another.
    """
    return ".." in path.split("/")


def _checked(endpoint: Endpoint, url: str, where: str) -> Endpoint:
    if has_parent_step(endpoint.path):
        raise ConfigError(f"{where}: the path of `{url}` climbs with `..`",
                          hint="write the folder's path without `..`")
    return endpoint


def _endpoint(match: re.Match, url: str, where: str) -> Endpoint:
    groups = match.groupdict()
    host = groups["host"].strip("[]")
    port = int(groups["port"]) if groups.get("port") else None
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"{where}: port {port} in `{url}` is out of range", hint="use a port from 1 to 65535")
    return Endpoint("ssh", path=groups.get("path") or "", host=host, user=groups["user"], port=port)


def _hub_endpoint(url: str, where: str) -> Endpoint:
    match = _HUB_URL.match(url)
    if not match:
        raise ConfigError(f"{where}: cannot read `{url}` as a hub remote", hint="write hub://HUB[:PORT]/AGENT/abs/path")
    ssh = _endpoint(match, url, where)
    return ssh._replace(scheme="hub", agent=match["agent"])


def resolve(config: Config, spec: str | None) -> list[Remote]:
    """Turn a target spec (remote, group, comma list, `all`, a URL, or None for the default) into remotes.

    Raises UsageError for an unknown name, with a did-you-mean.
    """
    if not spec:
        return _default(config)
    seen: dict[str, Remote] = {}
    for part in (p.strip() for p in spec.split(",")):
        if part:
            for remote in _one(config, part):
                seen.setdefault(remote.name, remote)
    if not seen:
        raise UsageError(f"target `{spec}` names no remote")
    return list(seen.values())


def _default(config: Config) -> list[Remote]:
    if config.default:
        return resolve(config, config.default)
    servers = [r for r in config.remotes.values() if r.kind == "server" and not _is_helper(config, r.name)]
    if len(servers) == 1:
        return servers
    if not servers:
        raise UsageError("no remote configured", hint="run `bridge init` or `bridge remote add NAME URL`")
    raise UsageError(f"several remotes ({', '.join(r.name for r in servers)}) and no `default:`",
                     hint="name a target, or choose the default one: bridge remote default NAME")


def _one(config: Config, name: str) -> list[Remote]:
    if name == "all":
        return [r for r in config.remotes.values() if not _is_helper(config, r.name)]
    if name in config.groups:
        return [config.remotes[member] for member in config.groups[name]]
    if name in config.remotes:
        return [config.remotes[name]]
    if "/" in name or "@" in name or ":" in name:
        parse_url(name, where="target")
        return [Remote(name=name, url=name)]
    import difflib  # here: only errors need it

    known = [*config.remotes, *config.groups, "all"]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean `{close[0]}`?" if close else f"known targets: {', '.join(known)}"
    raise UsageError(f"unknown target `{name}`", hint=hint)


def _is_helper(config: Config, name: str) -> bool:
    """A remote used only as a jump host or tunnel relay is not part of `all`."""
    used_as_hop = any(r.via == name for r in config.remotes.values()) or config.tunnel.relay == name
    in_group = any(name in members for members in config.groups.values())
    return used_as_hop and not in_group


def git_url(remote: Remote) -> str:
    """The URL git itself is given for a `kind: git` remote: git has no local:// scheme, so its path."""
    return remote.url[len("local://"):] if remote.url.startswith("local:///") else remote.url
