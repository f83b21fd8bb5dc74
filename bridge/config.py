"""bridge.yaml and the per-user config, loaded into frozen dataclasses.

Precedence, highest first: command-line flag > `BRIDGE_*` environment > workspace
bridge.yaml > user config.yaml > ~/.ssh/config (applied by the SSH layer) > defaults.
Every error names the file, the line and the key, and suggests a fix.
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge import limits, paths
from bridge.errors import ConfigError
from bridge.server.schema import DeployConfig, NodeDeps, PythonDeps  # noqa: F401 - the one deploy schema
from bridge.yamlfile import Located, load_yaml, parse_yaml

CONFIG_NAME = "bridge.yaml"


@dataclass(frozen=True)
class Remote:
    """A place bridge pushes to or runs on: `url` plus how to reach it."""

    name: str = ""
    url: str = ""
    identity: str | None = None
    via: str | None = None
    kind: str = "server"  # "server" deploys; "git" is a plain git remote (push only)
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class SandboxConfig:
    """Limits of `exec --sandbox` (deny by default)."""

    image: str = "bridge-sandbox:bookworm"
    memory: str = "512m"
    cpus: float = 1.0
    pids: int = 256
    network: str = "none"
    tmpfs: str = "64m"
    output_limit: str = "16m"
    workspace_writable: bool = False
    pool: int = 0


@dataclass(frozen=True)
class ExecConfig:
    """Defaults of `bridge exec`."""

    timeout: float = 0
    forks: int = 32
    sandbox: SandboxConfig | None = None  # None: no sandbox configured (docker then only informational)


@dataclass(frozen=True)
class TunnelConfig:
    """`bridge tunnel up`: which relay, which forwards, how fast to notice a dead link."""

    relay: str | None = None
    forwards: tuple[str, ...] = ()
    keepalive: float = 15
    backoff_cap: float = 30


@dataclass(frozen=True)
class SecurityConfig:
    """Client-side security settings; the server's policy is the one that binds."""

    policy: str | None = None
    secret_patterns: tuple[str, ...] = ("TOKEN", "SECRET", "PASSWORD", "KEY")
    record_input: bool = False


@dataclass(frozen=True)
class Config:
    """Everything bridge knows about this workspace and user."""

    workspace: str = ""
    default: str | None = None
    remotes: dict[str, Remote] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    exec: ExecConfig = field(default_factory=ExecConfig)
    tunnel: TunnelConfig = field(default_factory=TunnelConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    root: Path | None = None  # the workspace folder, None outside a workspace
    path: Path | None = None  # its bridge.yaml


def find_workspace(start: Path | None = None) -> Path | None:
    """The nearest folder at or above `start` that holds bridge.yaml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder
    return None


def user_config_path() -> Path:
    """`$XDG_CONFIG_HOME/bridge/config.yaml`."""
    return paths.config_dir() / "config.yaml"


def load(start: Path | None = None, *, required: bool = False) -> Config:
    """Load user config, then the workspace's bridge.yaml over it, then `BRIDGE_*` env over both.

    Raises ConfigError naming file:line:key for any bad value, or when `required`
    and no bridge.yaml is found.
    """
    root = find_workspace(start)
    if root is None and required:
        raise ConfigError(f"no {CONFIG_NAME} in {Path.cwd()} or any folder above it",
                          hint="run `bridge init` in your project folder")
    merged: Located = Located("<defaults>", 0)
    user_path = user_config_path()
    for path in (user_path if user_path.is_file() else None, root / CONFIG_NAME if root else None):
        if path is not None:
            merged = _merge(merged, _read_mapping(path))
    merged = _merge(merged, _env_overrides())
    config = _build(Config, merged, "")
    config = dataclasses.replace(config, remotes=_named(config.remotes), root=root,
                                 path=root / CONFIG_NAME if root else None)
    if not config.workspace and root is not None:
        config = dataclasses.replace(config, workspace=root.name)
    _check_references(config, merged)
    return config


def _read_mapping(path: Path) -> Located:
    return _as_mapping(load_yaml(path, paths.cache_dir()), str(path))


def _as_mapping(data: Any, source: str) -> Located:
    if data is None:
        return Located(source, 1)
    if not isinstance(data, Located):
        raise ConfigError(f"{source}:1: the file must be a mapping of settings, got {type(data).__name__}",
                          hint="start with `workspace: NAME` and `remotes:`")
    return data


def check_text(text: str, source: str) -> Config:
    """Load `text` as a bridge.yaml on its own (no user config, no env), raising ConfigError if it is bad.

    Used before rewriting bridge.yaml, so a bad edit is refused and the file is never left broken.
    """
    merged = _as_mapping(parse_yaml(text, source), source)
    config = _build(Config, merged, "")
    config = dataclasses.replace(config, remotes=_named(config.remotes))
    _check_references(config, merged)
    return config


def _merge(base: Located, top: Located) -> Located:
    """Deep-merge two mappings; `top` wins, and each key keeps the line it came from."""
    out = Located(top.source if top else base.source, top.line or base.line)
    for source in (base, top):
        for key, value in source.items():
            old = out.get(key)
            if isinstance(old, Located) and isinstance(value, Located) and key not in ("remotes", "groups"):
                value = _merge(old, value)
            elif isinstance(old, Located) and isinstance(value, Located):
                value = _merge_named(old, value)
            out[key] = value
            out.key_lines[key] = source.key_lines.get(key, source.line)
            out.key_sources[key] = source.key_sources.get(key, source.source)
            if isinstance(value, Located):
                value.source = value.source or source.source
    return out


def _merge_named(base: Located, top: Located) -> Located:
    """remotes/groups merge by name: a workspace remote replaces a user remote of the same name whole."""
    out = Located(top.source, top.line)
    for source in (base, top):
        for key, value in source.items():
            out[key] = value
            out.key_lines[key] = source.key_lines.get(key, source.line)
            out.key_sources[key] = source.key_sources.get(key, source.source)
    return out


_ENV_KEYS = {
    "BRIDGE_DEFAULT": ("default",),
    "BRIDGE_EXEC_TIMEOUT": ("exec", "timeout"),
    "BRIDGE_FORKS": ("exec", "forks"),
    "BRIDGE_SANDBOX_IMAGE": ("exec", "sandbox", "image"),
    "BRIDGE_TUNNEL_KEEPALIVE": ("tunnel", "keepalive"),
}


def _env_overrides() -> Located:
    """`BRIDGE_*` variables as a config mapping, so they go through the same checks."""
    out = Located("<environment>", 0)
    for var, keys in _ENV_KEYS.items():
        if var not in os.environ:
            continue
        node = out
        for key in keys[:-1]:
            node = node.setdefault(key, Located(f"${var}", 0))
        node[keys[-1]] = os.environ[var]
        node.key_sources[keys[-1]] = f"${var}"
    return out


def _build(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from a Located mapping, checking keys and types against its fields."""
    if not isinstance(data, Located):
        raise ConfigError(f"{where or 'config'} must be a mapping", hint="indent its keys under it")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in ("root", "path", "name")}
    values: dict[str, Any] = {}
    for key, raw in data.items():
        if key not in fields:
            raise _unknown_key(data, key, list(fields), where)
        dotted = f"{where}.{key}" if where else key
        values[key] = _convert(hints[key], raw, data, key, dotted)
        _check_limits(data, key, dotted, values[key], raw)
    return cls(**values)


def _check_limits(parent: Located, key: str, dotted: str, value: Any, raw: Any) -> None:
    """Refuse a number or size that bridge cannot use (the ranges in bridge.limits), naming file:line:key."""
    setting = limits.setting_key(dotted)
    if setting in limits.SIZES:
        want = limits.bad_size(setting, value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        allowed = limits.out_of_range(setting, value)
        want = f"a number {allowed}" if allowed else None
    else:
        return
    if want:
        raise _bad_type(parent, key, dotted, want, raw)


def _unknown_key(data: Located, key: str, known: list[str], where: str) -> ConfigError:
    import difflib  # here: only errors need it

    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean `{close[0]}`?" if close else f"known keys here: {', '.join(sorted(known))}"
    place = f" in `{where}`" if where else ""
    return ConfigError(f"{data.where(key)}: unknown key `{key}`{place}", hint=hint)


def _is_record(hint: Any) -> bool:
    """Whether a field's type is one of the config dataclasses (built key by key)."""
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _convert(hint: Any, raw: Any, parent: Located, key: str, dotted: str) -> Any:
    """Coerce one value to its field type, or raise naming file:line:key."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if raw is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    record = _is_record(hint)
    if raw is None and (origin in (dict, tuple) or record):
        return hint() if record else origin()  # an empty `remotes:` means none
    if record:
        return _build(hint, raw, dotted)
    if origin is dict:
        return _convert_dict(args[1], raw, parent, key, dotted)
    if origin is tuple:
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list):
            raise _bad_type(parent, key, dotted, "a list", raw)
        return tuple(_convert(args[0], item, parent, key, dotted) for item in items)
    return _scalar(hint, raw, parent, key, dotted)


def _convert_dict(value_type: Any, raw: Any, parent: Located, key: str, dotted: str) -> dict:
    if not isinstance(raw, Located):
        raise _bad_type(parent, key, dotted, "a mapping of names", raw)
    out = {}
    for name, item in raw.items():
        if dataclasses.is_dataclass(value_type) and isinstance(item, str):
            item = _url_only(raw, name, item)
        out[name] = _convert(value_type, item, raw, name, f"{dotted}.{name}")
    return out


def _url_only(parent: Located, name: str, url: str) -> Located:
    """`prod: ssh://host/path` is short for `prod: {url: ssh://host/path}`."""
    node = Located(parent.source, parent.key_lines.get(name, parent.line))
    node["url"] = url
    node.key_lines["url"] = node.line
    return node


def _scalar(hint: Any, raw: Any, parent: Located, key: str, dotted: str) -> Any:
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "0", "false", "no"):
            return raw.lower() in ("1", "true", "yes")
        raise _bad_type(parent, key, dotted, "true or false", raw)
    if hint in (int, float):
        try:
            if isinstance(raw, bool):
                raise ValueError
            return hint(raw)
        except (TypeError, ValueError):
            raise _bad_type(parent, key, dotted, "a number", raw) from None
    if hint is str:
        if isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
            return str(raw)
        raise _bad_type(parent, key, dotted, "a string", raw)
    return raw


def _bad_type(parent: Located, key: str, dotted: str, want: str, raw: Any) -> ConfigError:
    source = parent.key_sources.get(key, parent.source)
    fix = f"set {source[1:]}" if source.startswith("$") else f"set `{key}:`"
    return ConfigError(f"{parent.where(key)}: `{dotted}` must be {want}, got {raw!r}", hint=f"{fix} to {want}")


def _named(remotes: dict[str, Remote]) -> dict[str, Remote]:
    return {name: dataclasses.replace(remote, name=name) for name, remote in remotes.items()}


def _child(node: Located, key: str, default: Located) -> Located:
    """node[key] when it is a mapping read from the file (so it knows its lines), else `default`."""
    child = node.get(key)
    return child if isinstance(child, Located) else default


def _check_references(config: Config, raw: Located) -> None:
    """Every `via`, group member, default and tunnel relay must name a known remote; every url must parse."""
    from bridge.targets import parse_url

    remotes_node = _child(raw, "remotes", Located("config", 0))
    for name, remote in config.remotes.items():
        node = _child(remotes_node, name, remotes_node)
        if not remote.url:
            raise ConfigError(f"{remotes_node.where(name)}: remote `{name}` has no `url`",
                              hint="add url: ssh://user@host/path or local:///path")
        if remote.kind == "server":
            parse_url(remote.url, where=f"{node.where('url')}: remotes.{name}.url")
        if remote.kind not in ("server", "git"):
            raise ConfigError(f"{node.where('kind')}: remotes.{name}.kind must be `server` or `git`",
                              hint="use kind: git for a plain git host such as a GitHub origin")
        if remote.via is not None:
            _must_be_remote(config, remote.via, node.where("via"), f"remotes.{name}.via")
    groups_node = _child(raw, "groups", raw)
    for group, members in config.groups.items():
        if group in config.remotes:
            raise ConfigError(f"{groups_node.where(group)}: group `{group}` has the name of a remote",
                              hint="rename the group or the remote")
        for member in members:
            _must_be_remote(config, member, groups_node.where(group), f"groups.{group}")
    if config.default and config.default not in config.groups:
        _must_be_remote(config, config.default, raw.where("default"), "default")
    if config.tunnel.relay:
        tunnel_node = _child(raw, "tunnel", raw)
        _must_be_remote(config, config.tunnel.relay, tunnel_node.where("relay"), "tunnel.relay")


def _must_be_remote(config: Config, name: str, where: str, key: str) -> None:
    if name in config.remotes:
        return
    import difflib

    close = difflib.get_close_matches(name, list(config.remotes), n=1)
    hint = f"did you mean `{close[0]}`?" if close else "add it under `remotes:` or fix the name"
    raise ConfigError(f"{where}: `{key}` names `{name}`, which is not a remote", hint=hint)
