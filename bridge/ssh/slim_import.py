"""`import paramiko` without `invoke`, which bridge never needs; call before paramiko loads.

paramiko/config.py imports `invoke` (a paramiko 5 requirement) only to run the `Match exec` lines
of an ssh config. A None entry in sys.modules makes that import fail fast, and paramiko then
leaves invoke unused. Done only when ~/.ssh/config has no `Match … exec`.

This changes process-wide state, so it pays rent: a cold `bridge exec --no-reuse` took 37-45 %
more CPU without it (median 155 -> 213 ms, three interleaved runs against ssh; cold ratio vs ssh
1.35 -> 1.43 and 1.27 -> 1.79). tests/ssh/test_slim_import.py fails when paramiko changes under it.
(A stand-in importlib.metadata for paramiko's version lookup bought 8-15 %, median 8.5 %, of the
same CPU and nothing clear of the ratio's noise: removed.)
"""
from __future__ import annotations

import re
import sys


def slim_paramiko_import() -> None:
    """Skip paramiko's invoke import when the ssh config does not need it."""
    if "paramiko" in sys.modules or "invoke" in sys.modules:
        return
    from bridge import paths

    try:
        text = (paths.ssh_dir() / "config").read_text(errors="replace")
    except OSError:
        text = ""
    if not re.search(r"(?im)^\s*match\b.*\bexec\b", text):
        sys.modules["invoke"] = None  # type: ignore[assignment]
