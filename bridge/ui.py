"""Rendering shared by the command modules: tables on a terminal, plain text when piped, JSON on request."""
from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, Iterable, Sequence

if TYPE_CHECKING:
    from rich.console import Console

# Rich is imported inside the functions: `bridge --help` must not pay ~40 ms for it.


def console(stderr: bool = False) -> "Console":
    """A Rich console; colour and boxes only on a terminal (NO_COLOR respected)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print rows as a table on a terminal, as tab-separated lines when piped."""
    out = console()
    rows = [[str(cell) for cell in row] for row in rows]
    if not out.is_terminal:
        if title:
            print(title)
        print("\t".join(columns))
        for row in rows:
            print("\t".join(row))
        return
    from rich.table import Table

    grid = Table(title=title, title_justify="left")
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*row)
    out.print(grid)


def print_json(value: Any, *, lines: bool = False) -> None:
    """Print a value as JSON (one object per line with `lines`)."""
    if lines:
        for item in value:
            sys.stdout.write(json.dumps(item, default=str) + "\n")
        return
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def say(message: str, *, err: bool = False) -> None:
    """One line of plain progress or result text."""
    stream = sys.stderr if err else sys.stdout
    stream.write(message + "\n")
    stream.flush()


def mark(ok: bool | None) -> str:
    """✓ / ✗ / – for a check result (– is informational)."""
    return "ok" if ok else ("-" if ok is None else "FAIL")


def when(stamp: float | None) -> str:
    """A Unix time as local `YYYY-MM-DD HH:MM:SS (Ns ago)`, or `-`."""
    import time

    return "-" if stamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) + f" ({ago(stamp)})"


def ago(stamp: float | None) -> str:
    """How long ago a Unix time was, in whole seconds, or `-`."""
    import time

    return "-" if stamp is None else f"{time.time() - stamp:.0f}s ago"


def unit_written(path: Any) -> None:
    """What `… install` prints after writing a systemd unit: where, and how to start it."""
    say(f"wrote {path}")
    say(f"enable it with: sudo systemctl daemon-reload && sudo systemctl enable --now {path.name}")


def status_report(current: dict | None, rows: Any, never: str, as_json: bool) -> int:
    """A long-running process's status (tunnel, agent) as a table of `rows(current)` or JSON; 1 if not running."""
    if as_json:
        print_json(current or {"state": "never started", "running": False})
    elif current is None:
        say(never)
    else:
        table(None, ["field", "value"], rows(current))
    return 0 if current and current["running"] else 1
