"""Where exec output goes on this terminal: raw bytes for one host, host-prefixed lines for a fleet.

Stdlib only: the warm path (bridge.exec.fast) renders with it too, without Rich. Output is
written to the file descriptors directly, so bytes pass through unchanged (binary-safe).
"""
from __future__ import annotations

import _thread
import os
import sys
TYPE_CHECKING = False  # not typing's: importing typing took a warm exec from 18.5 to 34 ms CPU (1.98x to
# 3.67x ControlMaster, interleaved runs). mypy reads the name as True (tests/test_types.py); a keeper test
# keeps typing off the warm path.
if TYPE_CHECKING:  # collections.abc too: ~5 ms
    from collections.abc import Sequence
    from typing import Any

COLOURS = ("36", "33", "35", "32", "34", "31", "96", "93")


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is out (pipes accept partial writes)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def stdout_sink(data: bytes) -> None:
    write_all(1, data)


def stderr_sink(data: bytes) -> None:
    write_all(2, data)


def use_colour(fd: int = 1) -> bool:
    """Colour only on a terminal, and never with NO_COLOR set (https://no-color.org)."""
    return os.isatty(fd) and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


class Prefixed:
    """Fleet output: every complete line prefixed with its host; partial lines wait for their newline."""

    def __init__(self, hosts: Sequence[str], colour: bool | None = None) -> None:
        width = max((len(h) for h in hosts), default=0)
        paint = use_colour() if colour is None else colour
        self.prefix = {h: _prefix(h, width, COLOURS[i % len(COLOURS)] if paint else None) for i, h in enumerate(hosts)}
        self.pending: dict[tuple[str, int], bytes] = {}
        self.lock = _thread.allocate_lock()  # not threading: the warm path counts its ~7 ms

    def output(self, host: str, stream: int, data: bytes) -> None:
        """Write the complete lines of `data`; keep the tail until its newline arrives."""
        with self.lock:
            text = self.pending.pop((host, stream), b"") + data
            *lines, tail = text.split(b"\n")
            if tail:
                self.pending[(host, stream)] = tail
            if lines:
                write_all(stream, b"".join(self.prefix[host] + line + b"\n" for line in lines))

    def done(self, host: str) -> None:
        """Flush a last line without a newline."""
        for stream in (1, 2):
            with self.lock:
                tail = self.pending.pop((host, stream), b"")
            if tail:
                write_all(stream, self.prefix[host] + tail + b"\n")


def _prefix(host: str, width: int, colour: str | None) -> bytes:
    label = host.ljust(width)
    return (f"\x1b[{colour}m{label}\x1b[0m | " if colour else f"{label} | ").encode()


def summary(rows: Sequence[dict[str, Any]], stream: Any = None) -> None:
    """The host / exit / status / duration / error table, aligned, after a fan-out."""
    stream = stream or sys.stderr
    table = [["host", "exit", "status", "duration", "error"]]
    table += [[r["host"], str(r["exit_code"]), r["status"], f"{r['duration']:.2f}s", r.get("error") or ""]
              for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        stream.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n")
    stream.flush()


def json_line(row: dict[str, Any], sink: Any = stdout_sink) -> None:
    """One host's result as one JSON object on one line of stdout (or to `sink`: the keeper's client)."""
    import json  # here, not at the top: the warm path imports this module for write_all

    keys = ("host", "exit_code", "status", "stdout", "stderr", "duration", "timed_out", "error")
    sink((json.dumps({k: row.get(k) for k in keys}) + "\n").encode())
