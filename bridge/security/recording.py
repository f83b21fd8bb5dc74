"""Session recordings as asciicast v2 files, playable by `bridge replay` and by asciinema.

Format (https://docs.asciinema.org/manual/asciicast/v2/): a JSON header line, then one
`[seconds, "o"|"i"|"r", data]` line per event. Output is always recorded, input only on
request; known secret values are masked even when split across two reads.
"""
from __future__ import annotations

import codecs
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import TextIO

from bridge import limits
from bridge.errors import BridgeError
from bridge.paths import state_dir
from bridge.security.secrets import MIN_SECRET_LEN, mask_text, mask_values

EVENT_TYPES = ("o", "i", "m", "r")


class RecordingError(BridgeError):
    """A recording file is missing or not valid asciicast v2."""


def recordings_dir() -> Path:
    """Where client sessions are recorded: `$XDG_STATE_HOME/bridge/recordings`."""
    return state_dir() / "recordings"


def new_recording_path(folder: Path, user: str) -> Path:
    """A fresh, sortable file name for one session of `user`."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return folder / f"{stamp}-{user}-{os.getpid()}.cast"


class _MaskedStream:
    """Decodes bytes as UTF-8 and masks secrets, holding back a tail that may begin a secret."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET_LEN}, key=len, reverse=True)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = ""

    def feed(self, data: bytes | str, final: bool = False) -> str:
        """The text that is safe to write now."""
        text = data if isinstance(data, str) else self.decoder.decode(data, final)
        text = mask_values(self.pending + text, self.secrets)
        cut = len(text) if final else self._safe_cut(text)
        self.pending = text[cut:]
        return text[:cut]

    def _safe_cut(self, text: str) -> int:
        """The earliest index from which the rest of `text` could be the start of a secret."""
        longest = len(self.secrets[0]) if self.secrets else 0
        for start in range(max(0, len(text) - longest + 1), len(text)):
            if any(s.startswith(text[start:]) for s in self.secrets):
                return start
        return len(text)


class Recorder:
    """Context manager writing one asciicast v2 file; `output()`/`input()` add events as they happen."""

    def __init__(self, path: Path, *, width: int = 80, height: int = 24, title: str | None = None,
                 command: str | None = None, env: dict[str, str] | None = None,
                 record_input: bool = False, secrets: Iterable[str] = ()) -> None:
        self.path = Path(path)
        self.record_input = record_input
        self.secrets = tuple(secrets)
        self.header = _header(width, height, title, command, env, self.secrets)
        self.streams = {"o": _MaskedStream(self.secrets), "i": _MaskedStream(self.secrets)}
        self.sha256: str | None = None
        self._file: TextIO | None = None
        self._start = 0.0

    def __enter__(self) -> Recorder:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._file = os.fdopen(fd, "w", encoding="utf-8")
        self._file.write(json.dumps(self.header) + "\n")
        self._start = time.monotonic()
        return self

    def output(self, data: bytes | str) -> None:
        """Record what the terminal showed."""
        self._event("o", self.streams["o"].feed(data))

    def input(self, data: bytes | str) -> None:
        """Record what the user typed, when input recording is on."""
        if self.record_input:
            self._event("i", self.streams["i"].feed(data))

    def resize(self, width: int, height: int) -> None:
        """Record a terminal resize."""
        self._event("r", f"{width}x{height}")

    def _event(self, kind: str, text: str) -> None:
        if text and self._file is not None:
            elapsed = round(time.monotonic() - self._start, 6)
            self._file.write(json.dumps([elapsed, kind, text]) + "\n")
            self._file.flush()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._event("o", self.streams["o"].feed(b"", final=True))
        if self.record_input:
            self._event("i", self.streams["i"].feed(b"", final=True))
        if self._file is not None:
            self._file.close()
            self._file = None
        self.sha256 = file_sha256(self.path)


def _header(width: int, height: int, title: str | None, command: str | None,
            env: dict[str, str] | None, secrets: tuple[str, ...]) -> dict:
    """The asciicast v2 header; title and command are masked."""
    header: dict = {"version": 2, "width": max(1, width), "height": max(1, height),
                    "timestamp": int(time.time())}
    source = env if env is not None else os.environ
    header["env"] = {k: source[k] for k in ("SHELL", "TERM") if source.get(k)}
    if title:
        header["title"] = mask_text(title, secrets)
    if command:
        header["command"] = mask_text(command, secrets)
    return header


def file_sha256(path: Path) -> str:
    """sha256 of a file, the value an audit line carries for its recording."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(65536), b""):
            digest.update(block)
    return digest.hexdigest()


def read_cast(path: Path) -> tuple[dict, list[tuple[float, str, str]]]:
    """The header and events of an asciicast v2 file, validated strictly; raises RecordingError."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise RecordingError(f"cannot read recording {path}: {e}") from e
    if not lines:
        raise RecordingError(f"{path}: empty file, not an asciicast")
    header = _parse_header(path, lines[0])
    events, last = [], 0.0
    for number, line in enumerate(lines[1:], start=2):
        event = _parse_event(path, number, line, last)
        if event is not None:
            events.append(event)
            last = event[0]
    return header, events


def _parse_header(path: Path, line: str) -> dict:
    """Line 1: an object with version 2 and positive integer width and height."""
    try:
        header = json.loads(line)
    except ValueError as e:
        raise RecordingError(f"{path}:1: header is not JSON") from e
    ok = isinstance(header, dict) and header.get("version") == 2 and all(
        isinstance(header.get(k), int) and header[k] > 0 for k in ("width", "height"))
    if not ok:
        raise RecordingError(f"{path}:1: not an asciicast v2 header (version 2, width, height)")
    return header


def _parse_event(path: Path, number: int, line: str, last: float) -> tuple[float, str, str] | None:
    """One `[time, code, data]` line, time never going backwards; blank lines are skipped."""
    if not line.strip():
        return None
    try:
        event = json.loads(line)
    except ValueError as e:
        raise RecordingError(f"{path}:{number}: event is not JSON") from e
    valid = (isinstance(event, list) and len(event) == 3 and isinstance(event[0], (int, float))
             and not isinstance(event[0], bool) and event[0] >= last
             and event[1] in EVENT_TYPES and isinstance(event[2], str))
    if not valid:
        raise RecordingError(f"{path}:{number}: not a [time, code, data] event in time order")
    return float(event[0]), event[1], event[2]


def play(path: Path, write: Callable[[str], None], *, speed: float = 1.0, max_idle: float | None = None,
         sleep: Callable[[float], None] = time.sleep) -> int:
    """Write a recording's output with its original timing (divided by `speed`); returns events played.

    Raises UsageError for a `speed` or `max_idle` out of range (NaN included: sleep would raise).
    """
    limits.check_option("--speed", "replay.speed", speed)
    limits.check_option("--max-idle", "replay.max_idle", max_idle)
    _header_, events = read_cast(path)
    last, played = 0.0, 0
    for at, kind, data in events:
        if kind != "o":
            continue
        delay = (at - last) / speed
        sleep(min(delay, max_idle) if max_idle is not None else delay)
        write(data)
        last, played = at, played + 1
    return played


def output_text(path: Path) -> str:
    """Everything the session showed, concatenated: what a replay prints without timing."""
    return "".join(data for _at, kind, data in read_cast(path)[1] if kind == "o")

