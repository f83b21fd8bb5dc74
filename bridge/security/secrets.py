"""Keep secret values out of everything bridge writes: audit lines, recordings and logs.

A value is secret when its environment name matches one of the patterns (TOKEN, SECRET,
PASSWORD, KEY by default; `$BRIDGE_SECRET_PATTERNS`, a comma list, replaces them).
"""
from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping

MASK = "***"
DEFAULT_PATTERNS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY")
# A value shorter than this is not masked inside free text: "1" or "ab" would shred every line.
MIN_SECRET_LEN = 4


def secret_patterns() -> tuple[str, ...]:
    """The name fragments that mark a variable as secret, from the environment or the defaults."""
    raw = os.environ.get("BRIDGE_SECRET_PATTERNS", "")
    custom = tuple(p.strip().upper() for p in raw.split(",") if p.strip())
    return custom or DEFAULT_PATTERNS


def is_secret_name(name: str, patterns: Iterable[str] | None = None) -> bool:
    """True when an environment name looks like it holds a secret (case-insensitive substring)."""
    upper = name.upper()
    return any(p in upper for p in (patterns or secret_patterns()))


def mask_env(env: Mapping[str, str], patterns: Iterable[str] | None = None) -> dict[str, str]:
    """A copy of `env` with every secret-named value replaced by `***`, safe to log."""
    pats = tuple(patterns or secret_patterns())
    return {k: (MASK if is_secret_name(k, pats) else v) for k, v in env.items()}


def secret_values(env: Mapping[str, str], patterns: Iterable[str] | None = None) -> list[str]:
    """The values of secret-named variables, the strings `mask_text` must hide."""
    pats = tuple(patterns or secret_patterns())
    return [v for k, v in env.items() if is_secret_name(k, pats) and v]


# One shell word's worth of value: quoted strings, escapes and plain characters up to whitespace or an
# operator, so a mask never eats the `;` (or anything else) after the value.
_VALUE = r"""(?:"(?:[^"\\]|\\.)*"|'[^']*'|\\.|[^\s;&|<>()'"\\])+"""
# Tools that take a password glued to -p (mysql -pSECRET, sshpass -pSECRET).
_GLUED_P_TOOLS = r"(?:mysql[\w-]*|mariadb[\w-]*|sshpass)"


@functools.lru_cache(maxsize=8)
def _maskers(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    """The compiled forms that carry a secret value, for one set of name patterns (cached: hot path).

    Each has the named groups `keep` (written as is) and `value` (masked when it is a literal).
    """
    names = "|".join(re.escape(p) for p in patterns)
    secret_name = rf"[\w-]*(?:{names})"
    return (
        re.compile(rf"(?i)(?P<keep>(?<![\w$-])\w*(?:{names})\w*=)(?P<value>{_VALUE})"),
        re.compile(rf"(?i)(?P<keep>(?<![\w-])--{secret_name}(?:=|\s+(?!-)))(?P<value>{_VALUE})"),
        re.compile(rf"(?i)(?P<keep>\bauthorization\s*:\s*(?:bearer|basic|token|digest)\s+)(?P<value>[^\s'\"]+)"),
        re.compile(rf"(?i)(?P<keep>\b{secret_name}\s*:\s*)(?P<value>[^\s'\"]+)"),
        re.compile(r"(?i)(?P<keep>\b[a-z][a-z0-9+.-]*://[^\s/:@'\"]+:)(?P<value>[^\s/@'\"]+)(?=@)"),
        re.compile(rf"(?P<keep>\b{_GLUED_P_TOOLS}\b[^;&|\n]*?\s-p)(?P<value>[^\s;&|<>()]+)"),
    )


def _literal(value: str) -> bool:
    """True when a value has no expansion: `$(cmd)`, `$VAR` and backquotes are recorded as written."""
    unquoted = re.sub(r"'[^']*'", "", value)
    return "$" not in unquoted and "`" not in unquoted


def _mask_match(m: re.Match[str]) -> str:
    return m.group("keep") + (MASK if _literal(m.group("value")) else m.group("value"))


def mask_values(text: str, secrets: Iterable[str]) -> str:
    """`text` with each known secret value (longest first) replaced by `***`."""
    for value in sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LEN}, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def mask_text(text: str, secrets: Iterable[str] = (), patterns: Iterable[str] | None = None) -> str:
    """`text` with known secret values and the literal values of secret-looking forms masked.

    The forms: `NAME=value` of a secret-named variable, `--token X` / `--password=X` style options,
    `-pX` for mysql-style tools, `Authorization: Bearer X` (and Basic) or a secret-named header,
    and the password of `scheme://user:pass@host`. Expansions (`$(...)`, `$VAR`) are left as written,
    so what a command does is never hidden; only the value is cut, never what follows it.
    """
    text = mask_values(text, secrets)
    for masker in _maskers(tuple(patterns or secret_patterns())):
        text = masker.sub(_mask_match, text)
    return text
