"""The audit writer as the tests run it: `bridge audit serve` as root on a socket in a fresh folder.

The folder is under /var/tmp (0755, root's), not pytest's 0700 tmp dir, so a login account
can reach the socket, and see (but not touch) the log beside it. The writer is stopped by its PID.
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import BRIDGE, Home


@dataclass
class AuditWriter:
    """A running writer: its socket, its log, its key, its process."""

    folder: Path
    proc: subprocess.Popen

    @property
    def socket(self) -> Path:
        return self.folder / "run" / "audit.sock"

    @property
    def log(self) -> Path:
        return self.folder / "log" / "audit.jsonl"

    @property
    def key(self) -> Path:
        return self.folder / "audit.key"

    def alive(self) -> bool:
        return self.proc.poll() is None


def start_writer(folder: Path, env: dict[str, str]) -> AuditWriter:
    """Start `bridge audit serve` on `folder`, keyed, and wait until its socket answers."""
    writer = AuditWriter(folder, None)  # type: ignore[arg-type]
    writer.key.write_bytes(secrets.token_hex(32).encode())
    writer.key.chmod(0o600)
    writer.proc = subprocess.Popen([*BRIDGE, "audit", "serve", "--socket", str(writer.socket), "--log",
                                    str(writer.log), "--key", str(writer.key)], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and writer.alive():
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(writer.socket))
            return writer
        except OSError:
            time.sleep(0.05)
    stop_writer(writer)
    raise RuntimeError(f"the audit writer did not start: {writer.proc.stderr.read().decode()}")


def stop_writer(writer: AuditWriter) -> None:
    """SIGTERM to the writer we started (by PID), then wait for it."""
    if writer.alive():
        writer.proc.terminate()
        try:
            writer.proc.wait(10)
        except subprocess.TimeoutExpired:
            writer.proc.kill()
            writer.proc.wait()
    writer.proc.stderr.close()


@pytest.fixture
def audit_writer(home: Home) -> Iterator[AuditWriter]:
    """A keyed writer run by root, in a 0755 folder of /var/tmp that is removed afterwards."""
    folder = Path("/var/tmp") / f"bridge-audit-{secrets.token_hex(4)}"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    writer = start_writer(folder, home.env)
    yield writer
    stop_writer(writer)
    shutil.rmtree(folder, ignore_errors=True)
