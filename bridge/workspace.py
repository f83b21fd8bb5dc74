"""`bridge init` and `bridge remote add/remove/default`: edits to bridge.yaml that keep the user's comments.

Every edit is checked by loading the new text before it replaces the file (atomically),
so a bad edit is refused and bridge.yaml is never left half-written.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from bridge import config as cfg
from bridge import paths
from bridge.errors import ConfigError, GitError, UsageError
from bridge.targets import parse_url, resolve
from bridge.yamlfile import Located, parse_yaml

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass
class InitReport:
    """What `bridge init` did, for the CLI to render."""

    root: Path
    created_config: bool = False
    created_repo: bool = False
    added: list[str] = field(default_factory=list)


def init(folder: Path, name: str | None, remotes: list[tuple[str, str]]) -> InitReport:
    """Make `folder` a workspace: a git repo with a bridge.yaml. Idempotent: an existing setup is kept.

    With no remote given and none configured, adds `local`, a local:// target under the data dir.
    """
    root = cfg.find_workspace(folder) or folder.resolve()
    report = InitReport(root, created_repo=_ensure_git_repo(root))
    path = root / cfg.CONFIG_NAME
    if not path.exists():
        workspace = name or root.name
        _check_name(workspace, "workspace name")
        _write_atomic(path, _template(workspace))
        report.created_config = True
    existing = cfg.check_text(path.read_text(), str(path)).remotes
    wanted = list(remotes)
    if not wanted and not existing:
        workspace = cfg.check_text(path.read_text(), str(path)).workspace or root.name
        wanted = [("local", f"local://{paths.data_dir() / 'targets' / workspace}")]
    for remote_name, url in wanted:
        if remote_name in existing:
            if existing[remote_name].url != url:
                raise ConfigError(f"{path}: remote `{remote_name}` already points at {existing[remote_name].url}",
                                  hint=f"`bridge remote remove {remote_name}` first, or pick another name")
            continue
        add_remote(path, remote_name, url)
        report.added.append(remote_name)
    return report


def _ensure_git_repo(root: Path) -> bool:
    """`git init` unless `root` is already inside a work tree; True when a repo was created."""
    import git

    try:
        git.Repo(root, search_parent_directories=True)
        return False
    except git.InvalidGitRepositoryError:
        pass
    except git.NoSuchPathError as e:
        raise UsageError(f"{root} does not exist", hint="create the folder first") from e
    try:
        git.Repo.init(root)
    except git.GitCommandError as e:
        raise GitError(f"git init in {root} failed: {e.stderr.strip()}", hint="check git is installed") from e
    return True


def _template(workspace: str) -> str:
    return (f"# bridge workspace settings: see `bridge --help` and README.md\n"
            f"workspace: {json.dumps(workspace)}\n"
            f"remotes:\n")


def add_remote(path: Path, name: str, url: str, *, identity: str | None = None, via: str | None = None,
               kind: str | None = None, default: bool = False) -> str | None:
    """Add `name` under `remotes:` in bridge.yaml (and make it `default:`). Raises ConfigError if it
    exists or the result is invalid.

    Returns the remote a command without a target ran on before and no longer does (the only server,
    `local` after `init`), so the CLI can say so: the new remote never silently takes its place.
    """
    _check_name(name, "remote name")
    if (kind or "server") == "server":  # git reads a git remote's URL (a path, file://, https, scp-style)
        parse_url(url, where=f"remote `{name}`")
    text = path.read_text()
    data = _located(text, path)
    remotes = data.get("remotes")
    if isinstance(remotes, Located) and name in remotes:
        raise ConfigError(f"{remotes.where(name)}: remote `{name}` already exists",
                          hint=f"`bridge remote remove {name}` first, or pick another name")
    fields = {"url": url, "identity": identity, "via": via, "kind": kind}
    entry = "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in fields.items() if v) + "}"
    new_text = _insert_remote(text, data, name, entry)
    if default:
        new_text = _with_default(new_text, path, name)
    implied_before = None if default else _implied_default(text, path)
    cfg.check_text(new_text, str(path))
    _write_atomic(path, new_text)
    return implied_before if implied_before and implied_before != _implied_default(new_text, path) else None


def set_default(path: Path, name: str) -> None:
    """Make remote or group `name` the target of commands that name none (`default:`), keeping the layout."""
    new_text = _with_default(path.read_text(), path, name)
    cfg.check_text(new_text, str(path))
    _write_atomic(path, new_text)


def _with_default(text: str, path: Path, name: str) -> str:
    """`text` with its `default:` line set to `name` (its comment kept), or one added after `workspace:`."""
    data = _located(text, path)
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    entry = f"default: {json.dumps(name)}"
    if "default" in data:
        index = data.key_lines["default"] - 1
        comment = re.search(r"\s+#.*$", lines[index].rstrip("\n"))
        lines[index] = entry + (comment.group(0) if comment else "") + "\n"
        return "".join(lines)
    after = _block(lines, data.key_lines["workspace"] - 1)[1] if "workspace" in data else 0
    return "".join(lines[:after] + [entry + "\n"] + lines[after:])


def _implied_default(text: str, path: Path) -> str | None:
    """The one remote a command without a target runs on when bridge.yaml says no `default:`."""
    config = cfg.check_text(text, str(path))
    if config.default:
        return None
    try:
        remotes = resolve(config, None)
    except UsageError:
        return None
    return remotes[0].name if len(remotes) == 1 else None


def remove_remote(path: Path, name: str) -> None:
    """Remove `name` from bridge.yaml; refused while a group, `via` or `default` still names it."""
    text = path.read_text()
    data = _located(text, path)
    remotes = data.get("remotes")
    if not isinstance(remotes, Located) or name not in remotes:
        raise UsageError(f"no remote `{name}` in {path}", hint="`bridge remote list` shows them")
    config = cfg.check_text(text, str(path))
    users = [f"group `{g}`" for g, members in config.groups.items() if name in members]
    users += [f"remote `{r.name}` (via)" for r in config.remotes.values() if r.via == name]
    users += ["`default`"] if config.default == name else []
    users += ["`tunnel.relay`"] if config.tunnel.relay == name else []
    if users:
        raise UsageError(f"remote `{name}` is still used by {', '.join(users)}", hint="change those first")
    lines = text.splitlines(keepends=True)
    start, end = _block(lines, remotes.key_lines[name] - 1)
    new_text = "".join(lines[:start] + lines[end:])
    cfg.check_text(new_text, str(path))
    _write_atomic(path, new_text)


def _located(text: str, path: Path) -> Located:
    data = parse_yaml(text, str(path))
    if data is None:
        return Located(str(path), 1)
    if not isinstance(data, Located):
        raise ConfigError(f"{path}:1: not a mapping", hint="start with `workspace: NAME`")
    return data


def _insert_remote(text: str, data: Located, name: str, entry: str) -> str:
    """Put `  name: {…}` as the last entry of the `remotes:` block, adding the block if missing."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    remotes = data.get("remotes")
    if "remotes" not in data:
        return "".join(lines) + f"remotes:\n  {name}: {entry}\n"
    header = data.key_lines["remotes"] - 1
    if not isinstance(remotes, Located) or not remotes:
        lines[header] = "remotes:\n"
        return "".join(lines[:header + 1] + [f"  {name}: {entry}\n"] + lines[header + 1:])
    if lines[header].rstrip().endswith("}"):
        raise ConfigError(f"{data.where('remotes')}: `remotes:` is written inline",
                          hint="write one remote per line under `remotes:`, then try again")
    last_line = max(remotes.key_lines.values()) - 1
    last = lines[last_line]
    indent = last[:len(last) - len(last.lstrip())]
    _, end = _block(lines, last_line)
    return "".join(lines[:end] + [f"{indent}{name}: {entry}\n"] + lines[end:])


def _block(lines: list[str], start: int) -> tuple[int, int]:
    """The line range of the YAML entry starting at `start`: until a line indented no deeper."""
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = start + 1
    while end < len(lines):
        stripped = lines[end].strip()
        if stripped and not stripped.startswith("#") and len(lines[end]) - len(lines[end].lstrip()) <= indent:
            break
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return start, end


def _check_name(name: str, what: str) -> None:
    if not _NAME.match(name) or name == "all":
        raise UsageError(f"`{name}` is not a valid {what}",
                         hint="use letters, digits, '.', '_' or '-' (not `all`), starting with a letter or digit")


def _write_atomic(path: Path, text: str) -> None:
    """Replace `path` in one rename, so a crash leaves the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
