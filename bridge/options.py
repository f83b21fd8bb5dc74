"""A command's options declared once: each flag's names, record field, type, default and help.

The declaration is the command model. The Typer command's signature is generated from it
(bridge.commands.model), the Typer-free fast paths parse argv with `Command.parse`, and the
client's audit line finds --env values through it, so the three cannot drift apart.
Import-free (no typing, no dataclasses: ~60 ms of imports), since the warm `bridge exec` loads it.
"""
from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing took a warm exec from 18.5 to 34 ms CPU (1.98x to
# 3.67x ControlMaster, interleaved runs). mypy reads the name as True (tests/test_types.py); a keeper test
# keeps typing off the warm path.
if TYPE_CHECKING:
    from typing import Any


def env_pair(text: str) -> tuple[str, str]:
    """`NAME=VALUE` → (NAME, VALUE); raises ValueError for a pair without `=`."""
    name, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"--env {text!r} has no `=`")
    return name, value


class Flag:
    """One option: its names (`--env`, `-e`), the field it fills, its kind (bool, str, int, float or
    env_pair, repeatable) and help. `fast=False`: only the Typer command handles it (a TTY, a password)."""

    __slots__ = ("field", "names", "kind", "help", "fast")

    def __init__(self, field: str, names: tuple[str, ...], kind: Any, help: str, *, fast: bool = True) -> None:
        self.field, self.names, self.kind, self.help, self.fast = field, names, kind, help, fast

    @property
    def default(self) -> Any:
        return False if self.kind is bool else ({} if self.kind is env_pair else None)

    @property
    def types(self) -> tuple:
        """What a value of this flag may be in a decoded record (bridge.exec.requests checks it)."""
        if self.kind is bool:
            return (bool,)
        if self.kind is env_pair:
            return (dict,)
        return (float, int, type(None)) if self.kind is float else (self.kind, type(None))

    def store(self, found: dict, text: str) -> None:
        """Put `text`, converted, into `found`; raises ValueError as Typer would refuse it."""
        if self.kind is env_pair:
            name, value = env_pair(text)
            found[self.field] = {**found[self.field], name: value}
        else:
            found[self.field] = self.kind(text)


class Command:
    """One command's declaration: the positional argument (a field name and help) and its flags."""

    def __init__(self, name: str, argument: tuple[str, str], flags: tuple[Flag, ...], *, dashes: bool = False) -> None:
        self.name, self.argument, self.flags, self.dashes = name, argument, flags, dashes
        self._by_name = {n: flag for flag in flags for n in flag.names}

    def defaults(self) -> dict:
        return {self.argument[0]: None, **{flag.field: flag.default for flag in self.flags}}

    def head(self, args: list[str]) -> list[str]:
        """The words bridge parses: all of them, or (with `dashes`) those before `--`."""
        return args[:args.index("--")] if self.dashes and "--" in args else args

    def parse(self, args: list[str]) -> tuple[dict, list[str]] | None:
        """(fields, extra positional words) as Typer reads `args`; None for anything the fast path leaves to
        Typer to parse or refuse (--help, an unknown option, a malformed value, a flag marked not fast)."""
        found, positional = self.defaults(), []
        words = iter(self.head(args))
        for word in words:
            name, eq, value = word.partition("=") if word.startswith("--") else (word, "", "")
            flag = self._by_name.get(name)
            if flag is None:
                if word.startswith("-"):
                    return None
                positional.append(word)
            elif not flag.fast or (flag.kind is bool and eq):
                return None
            elif flag.kind is bool:
                found[flag.field] = True
            elif not self._take(flag, found, value if eq else next(words, None)):
                return None
        if positional:
            found[self.argument[0]] = positional[0]
        return found, positional[1:]

    @staticmethod
    def _take(flag: Flag, found: dict, value: str | None) -> bool:
        if value is None or (value.startswith("-") and len(value) > 1):
            return False  # a value that looks like an option: Typer's to read
        try:
            flag.store(found, value)
        except ValueError:
            return False
        return True

    def values(self, args: list[str], field: str) -> list[str]:
        """The raw words given for `field`'s flag in `args` (`--env A=1 -e B=2 --env=C=3` → three)."""
        names = next(flag.names for flag in self.flags if flag.field == field)
        head = self.head(args)
        given = [head[i + 1] for i in range(len(head) - 1) if head[i] in names]
        return given + [word.partition("=")[2] for word in head
                        if word.startswith("--") and word.partition("=")[0] in names and "=" in word]


class Record:
    """A frozen value whose fields and defaults are its class's FIELDS: keyword construction, equality,
    a readable repr, `replace`. Written here because dataclasses and typing.NamedTuple cost the warm path
    ~60 ms and ~9 ms of imports; subclasses declare `__slots__ = tuple(FIELDS)` and annotate the fields.
    TYPES (field → allowed types) is what `from_wire` checks a decoded record against."""

    FIELDS: dict = {}
    TYPES: dict = {}
    __slots__: tuple = ()

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        for name, default in self.FIELDS.items():
            object.__setattr__(self, name, values.get(name, default))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.FIELDS}

    def replace(self, **changes: Any) -> Any:
        return type(self)(**{**self.as_dict(), **changes})

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.as_dict().items())})"

    @classmethod
    def from_wire(cls, data: object) -> Any:
        """The record `data` (a decoded dict) describes; raises ValueError naming the first field that is
        missing, unknown or of the wrong type, so nothing half-valid is ever acted on."""
        if not isinstance(data, dict):
            raise ValueError(f"a {cls.__name__} must be a mapping, not {type(data).__name__}")
        for name in sorted(set(data) ^ set(cls.FIELDS)):
            raise ValueError(f"{cls.__name__}: {'unknown' if name in data else 'missing'} field {name!r}")
        for name, types in cls.TYPES.items():
            value = data[name]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise ValueError(f"{cls.__name__}.{name}: {type(value).__name__} is not allowed")
        return cls(**data)
