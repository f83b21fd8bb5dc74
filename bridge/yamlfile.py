"""Read a YAML file safely and keep the line of every key, so config errors can say file:line."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.errors import ConfigError

MAX_BYTES = 256 * 1024
MAX_NODES = 20_000


class Located(dict):
    """A mapping that remembers the file and the line of each of its keys."""

    def __init__(self, source: str, line: int) -> None:
        super().__init__()
        self.source = source
        self.line = line
        self.key_lines: dict[str, int] = {}

    def where(self, key: str | None = None) -> str:
        """`file:line` of `key`, or of the mapping itself."""
        line = self.key_lines.get(key, self.line) if key is not None else self.line
        return f"{self.source}:{line}"


def load_yaml(path: Path) -> Any:
    """Parse `path` with the safe loader; refuse huge files and alias bombs instead of expanding them."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}", hint="check the path and its permissions") from e
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{path}: {len(raw)} bytes is too large for a config file (limit {MAX_BYTES})",
                          hint="config files hold settings, not data; trim it")
    return parse_yaml(raw.decode("utf-8", "replace"), str(path))


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
