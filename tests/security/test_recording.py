"""Recordings are strict asciicast v2, replay with the same output, and hide secrets."""
from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.security.recording import Recorder, RecordingError, output_text, play, read_cast
from tests.conftest import Result

OUTPUT = ["$ ls\r\n", "a.txt  b.txt\r\n", "caf\u00e9 \u2603\r\n", "$ exit\r\n"]


def record(path: Path, chunks: list[bytes], **kw) -> Recorder:
    with Recorder(path, width=100, height=30, **kw) as rec:
        for chunk in chunks:
            rec.output(chunk)
    return rec


def test_format_is_asciicast_v2(tmp_path: Path) -> None:
    cast = tmp_path / "s.cast"
    rec = record(cast, [c.encode() for c in OUTPUT], title="t", command="bash -l")
    lines = cast.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["version"] == 2 and (header["width"], header["height"]) == (100, 30)
    assert isinstance(header["timestamp"], int) and header["command"] == "bash -l"
    events = [json.loads(line) for line in lines[1:]]
    assert all(len(e) == 3 and isinstance(e[0], float) and e[1] == "o" for e in events)
    assert [e[0] for e in events] == sorted(e[0] for e in events)
    assert "".join(e[2] for e in events) == "".join(OUTPUT)
    assert oct(cast.stat().st_mode & 0o777) == "0o600" and rec.sha256 and len(rec.sha256) == 64


def test_utf8_split_across_reads_is_kept_whole(tmp_path: Path) -> None:
    data = "caf\u00e9\u2603".encode()
    cast = tmp_path / "s.cast"
    record(cast, [data[i:i + 1] for i in range(len(data))])
    assert output_text(cast) == "caf\u00e9\u2603"


def test_secret_split_across_reads_is_masked(tmp_path: Path) -> None:
    cast = tmp_path / "s.cast"
    record(cast, [b"token: hunt", b"er2", b"2 done"], secrets=["hunter22"], command="echo hunter22")
    assert "hunter22" not in cast.read_text() and output_text(cast) == "token: *** done"


def test_input_only_when_asked(tmp_path: Path) -> None:
    for flag, expected in ((False, []), (True, ["ls\r"])):
        cast = tmp_path / f"{flag}.cast"
        with Recorder(cast, record_input=flag) as rec:
            rec.input(b"ls\r")
        assert [e[2] for e in read_cast(cast)[1] if e[1] == "i"] == expected


def test_replay_prints_the_same_output(sec: Callable[..., Result], tmp_path: Path) -> None:
    cast = tmp_path / "s.cast"
    record(cast, [c.encode() for c in OUTPUT])
    result = sec("replay", str(cast), "--speed", "50")
    assert result.code == 0 and result.out == "".join(OUTPUT)


def test_replay_flags_out_of_range_are_usage_errors(sec: Callable[..., Result], tmp_path: Path) -> None:
    cast = tmp_path / "s.cast"
    record(cast, [c.encode() for c in OUTPUT])
    for flags in (["--speed", "0"], ["--speed", "nan"], ["--max-idle", "-1"], ["--max-idle", "nan"]):
        result = sec("replay", str(cast), *flags)
        assert (result.code, result.out) == (2, ""), (flags, result)
        assert f"bridge: error: {flags[0]} " in result.err and "hint: give" in result.err


def test_play_keeps_timing_divided_by_speed(tmp_path: Path) -> None:
    cast = tmp_path / "s.cast"
    cast.write_text('{"version": 2, "width": 80, "height": 24}\n[0.5, "o", "a"]\n[1.5, "o", "b"]\n[9.0, "i", "x"]\n')
    sleeps: list[float] = []
    out: list[str] = []
    assert play(cast, out.append, speed=2, sleep=sleeps.append) == 2
    assert sleeps == [0.25, 0.5] and out == ["a", "b"]


@pytest.mark.parametrize("text, line", [
    ("", "empty"),
    ('{"version": 1, "width": 80, "height": 24}\n', ":1:"),
    ('{"version": 2, "width": 0, "height": 24}\n', ":1:"),
    ('{"version": 2, "width": 80, "height": 24}\n[1.0, "o", "a"]\n[0.5, "o", "b"]\n', ":3:"),
    ('{"version": 2, "width": 80, "height": 24}\n[1.0, "x", "a"]\n', ":2:"),
    ('{"version": 2, "width": 80, "height": 24}\n[1.0, "o"]\n', ":2:"),
])
def test_invalid_files_are_refused(tmp_path: Path, text: str, line: str) -> None:
    cast = tmp_path / "bad.cast"
    cast.write_text(text)
    with pytest.raises(RecordingError, match=line):
        read_cast(cast)


@pytest.mark.skipif(shutil.which("asciinema") is None, reason="asciinema not installed (pip install asciinema)")
def test_asciinema_reads_it(tmp_path: Path) -> None:
    cast = tmp_path / "s.cast"
    record(cast, [c.encode() for c in OUTPUT])
    proc = subprocess.run(["asciinema", "cat", str(cast)], capture_output=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.decode() == "".join(OUTPUT)
