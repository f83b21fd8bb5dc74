"""Read a YAML file safely and keep the line of every key, so config errors can say file:line.

A parsed file can be kept in a private cache, keyed by the file's path and stamp (mtime_ns,
size, inode): a run whose config is unchanged then neither imports yaml nor parses (~50 ms of
a cold `bridge exec`). The cache holds only what parsing gave, lines included, so every check
after it, and every file:line:key error, is the same as without it.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from bridge.errors import BridgeError, ConfigError

MAX_BYTES = 256 * 1024
MAX_NODES = 20_000
CACHE_FORMAT = f"bridge-yaml-1 {sys.implementation.cache_tag}"
# Stamps have the kernel's coarse clock (ms) or worse: two writes of a file within one tick can
# share a stamp, so a file changed this recently is parsed but not cached.
SETTLED_NS = 2_000_000_000


class Located(dict):
    """A mapping that remembers the file and the line of each of its keys."""

    def __init__(self, source: str, line: int) -> None:
        super().__init__()
        self.source = source
        self.line = line
        self.key_lines: dict[str, int] = {}
        self.key_sources: dict[str, str] = {}  # after a merge: the file (or $VARIABLE) each key came from

    def where(self, key: str | None = None) -> str:
        """`file:line` of `key`, or of the mapping itself; `$BRIDGE_X` alone for an environment variable."""
        line = self.key_lines.get(key, self.line) if key is not None else self.line
        source = self.key_sources.get(key, self.source) if key is not None else self.source
        return f"{source}:{line}" if line else source


def load_yaml(path: Path, cache_dir: Path | None = None) -> Any:
    """Parse `path` with the safe loader; refuse huge files and alias bombs instead of expanding them.

    With `cache_dir`, an unchanged file is read back from the cache, and a newly parsed one stored.
    """
    try:
        with open(path, "rb") as f:
            stamp = _stamp(os.fstat(f.fileno()))
            cache = _Cache(cache_dir, path, stamp) if cache_dir else None
            cached = cache.load() if cache else None
            if cached is not None:
                return cached[0]
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}", hint="check the path and its permissions") from e
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{path}: {len(raw)} bytes is too large for a config file (limit {MAX_BYTES})",
                          hint="config files hold settings, not data; trim it")
    data = parse_yaml(raw.decode("utf-8", "replace"), str(path))
    if cache and time.time_ns() - stamp[0] >= SETTLED_NS:
        cache.store(data)
    return data


def parse_yaml(text: str, source: str) -> Any:
    """Compose the YAML node graph (linear even with aliases) and build plain values with key lines."""
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{source}{line}: invalid YAML: {problem}",
                          hint="fix the syntax at that line (indentation, quotes, a missing ':')") from e
    if node is None:
        return None
    return _Builder(source).build(node)


class _Builder:
    """Turns composed nodes into values, counting nodes so an alias bomb stops early."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.count = 0

    def build(self, node: Any) -> Any:
        import yaml

        self.count += 1
        if self.count > MAX_NODES:
            raise ConfigError(f"{self.source}: more than {MAX_NODES} values (an alias bomb?)",
                              hint="remove the repeated anchors/aliases")
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item) for item in node.value]
        return yaml.SafeLoader(" ").construct_object(node, deep=True)

    def _mapping(self, node: Any) -> Located:
        out = Located(self.source, node.start_mark.line + 1)
        for key_node, value_node in node.value:
            key = self.build(key_node)
            if not isinstance(key, str):
                raise ConfigError(f"{self.source}:{key_node.start_mark.line + 1}: key {key!r} must be a string",
                                  hint="quote the key")
            out[key] = self.build(value_node)
            out.key_lines[key] = key_node.start_mark.line + 1
        return out


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    """What changes whenever a file is written or replaced."""
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


class _Cache:
    """One parsed file in `folder` (0700, ours), as marshal of plain values; anything odd is a miss.

    A mapping is stored as (line, {key: value}, {key: line}): YAML gives no tuples, so a tuple
    always means a mapping.
    """

    def __init__(self, folder: Path, path: Path, stamp: tuple[int, int, int, int]) -> None:
        import hashlib

        key = os.path.abspath(path)
        self.folder = folder
        self.file = folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.marshal"
        self.source = str(path)
        self.header = (CACHE_FORMAT, key, stamp)

    def load(self) -> tuple[Any] | None:
        """(data,) when the cache holds this very file, else None (missing, stale, corrupt, not ours)."""
        import marshal

        try:
            fd = os.open(self.file, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if st.st_uid != os.getuid() or st.st_mode & 0o077:
                    return None
                header, data = marshal.loads(f.read())
            return (_located(data, self.source),) if header == self.header else None
        except (OSError, EOFError, ValueError, TypeError):
            return None

    def store(self, data: Any) -> None:
        """Write the entry atomically (0600); a cache that cannot be written is simply not used."""
        import marshal

        from bridge.paths import ensure_private_dir

        temp = self.folder / f".{self.file.name}.{os.getpid()}"
        try:
            blob = marshal.dumps((self.header, _plain(data)))
            ensure_private_dir(self.folder)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(temp, self.file)
        except (OSError, ValueError, BridgeError):  # ValueError: a value marshal cannot hold (a YAML date)
            try:
                temp.unlink(missing_ok=True)
            except OSError:
                pass


def _plain(value: Any) -> Any:
    if isinstance(value, Located):
        return (value.line, {key: _plain(item) for key, item in value.items()}, value.key_lines)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _located(value: Any, source: str) -> Any:
    if isinstance(value, tuple):
        line, items, key_lines = value
        out = Located(source, line)
        out.update((key, _located(item, source)) for key, item in items.items())
        out.key_lines = dict(key_lines)
        return out
    if isinstance(value, list):
        return [_located(item, source) for item in value]
    return value
