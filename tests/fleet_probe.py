"""Watch a fan-out from the servers' side: how many sessions ran at once, without timing anything.

Each sshd gets a ForceCommand that marks the session in a shared folder (the servers are on one
machine), waits up to two seconds for `wait_for` marks (2 unless told), records the most marks it
saw at once, then runs what the client asked for. With `--forks 1` every session sees only its own mark however
slowly the hosts run; hosts that do run together see each other.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

PROBE = """#!/bin/sh
d={marks}
touch "$d/$$"
most=1 i=0
while [ $i -lt 20 ]; do
    n=$(ls "$d" | wc -l)
    [ "$n" -gt "$most" ] && most=$n
    [ "$n" -ge {wait_for} ] && break
    sleep 0.1
    i=$((i + 1))
done
echo "$most" >> {seen}
rm -f "$d/$$"
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
"""


class Probe:
    """The ForceCommand line for sshd, and what the sessions saw."""

    def __init__(self, folder: Path, wait_for: int = 2) -> None:
        self.marks = folder / "marks"
        self.seen_file = folder / "seen"
        self.script = folder / "probe.sh"
        self.marks.mkdir()
        os.chmod(self.marks, 0o1777)  # other accounts (sudo's test user) mark their sessions too
        self.seen_file.touch()
        os.chmod(self.seen_file, 0o666)
        self.wait(wait_for)
        os.chmod(self.script, 0o755)

    def wait(self, wait_for: int) -> None:
        """Sessions from now on wait for `wait_for` marks (or two seconds) before running their command."""
        self.script.write_text(PROBE.format(marks=self.marks, seen=self.seen_file, wait_for=wait_for))

    @property
    def sshd_config(self) -> list[str]:
        return [f"ForceCommand {self.script}"]

    def seen(self) -> list[int]:
        """Per session, the most sessions it saw running at once (itself included)."""
        return [int(line) for line in self.seen_file.read_text().split()]


@pytest.fixture
def probe() -> Iterator[Probe]:
    folder = Path(tempfile.mkdtemp(prefix="bridge-forks-"))  # not under tmp_path: other accounts must reach it
    os.chmod(folder, 0o755)
    yield Probe(folder)
    shutil.rmtree(folder, ignore_errors=True)
