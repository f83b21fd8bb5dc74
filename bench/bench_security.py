"""What the guard's policy check costs per command: parse with bashlex, look through wrappers, match rules.

Run: PYTHONPATH=. python bench/bench_security.py
"""
from __future__ import annotations

import time

from bridge.security.policy import BUILTIN_ROLES, Grant, check_command

COMMANDS = [
    "ls -la",
    "git status && git log --oneline | head -n 3",
    "timeout 5 env A=1 nice -n 3 python3 -m app.migrate",
    """bash -c "sh -c 'ls | sudo id'" """,
    "for f in *.py; do wc -l $f; done > out.txt 2>&1",
]


def bench(rounds: int = 2000) -> dict[str, float]:
    """Microseconds per check_command call, per sample command."""
    grant = Grant("ops", BUILTIN_ROLES["operator"], ("*",))
    results = {}
    for cmd in COMMANDS:
        start = time.perf_counter()
        for _ in range(rounds):
            check_command(grant, cmd)
        results[cmd] = (time.perf_counter() - start) / rounds * 1e6
    return results


if __name__ == "__main__":
    for cmd, micros in bench().items():
        print(f"{micros:8.1f} us  {cmd.strip()}")
