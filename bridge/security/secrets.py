"""Keep secret values out of everything bridge writes: audit lines, recordings and logs.

A value is secret when its environment name matches one of the patterns (TOKEN, SECRET,
PASSWORD, KEY by default; `$BRIDGE_SECRET_PATTERNS`, a comma list, replaces them).
"""
from __future__ import annotations

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


def _assignment_re(patterns: tuple[str, ...]) -> re.Pattern[str]:
    names = "|".join(re.escape(p) for p in patterns)
    return re.compile(rf"(?i)(?<![\w$])(\w*(?:{names})\w*)=(\"[^\"]*\"|'[^']*'|\S+)")


def mask_values(text: str, secrets: Iterable[str]) -> str:
    """`text` with each known secret value (longest first) replaced by `***`."""
    for value in sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LEN}, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def mask_text(text: str, secrets: Iterable[str] = (), patterns: Iterable[str] | None = None) -> str:
    """`text` with each known secret value and each `NAME=value` of a secret-named variable masked."""
    text = mask_values(text, secrets)
    pats = tuple(patterns or secret_patterns())
    return _assignment_re(pats).sub(lambda m: f"{m.group(1)}={MASK}", text)
