"""cli.main's last resort: an exception nothing translated is one line and an exit code, never a stack trace."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

# No real input reaches this path once every boundary translates its errors, so a stand-in bug is
# injected: bridge.cli._run replaced by one that raises what the load test used to see from paramiko.
INJECT = """
import sys
import paramiko
from bridge import cli

def broken(args):
    raise {error}

cli._run = broken
cli.main(sys.argv[1:])
"""


def _main(home, error: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", INJECT.format(error=error), *args], capture_output=True,
                          text=True, env={**home.env, "PYTHONPATH": str(REPO), **(env or {})}, timeout=60)


@pytest.mark.parametrize("error, code, shown", [
    ('paramiko.SSHException("No existing session")', 255, "paramiko.ssh_exception.SSHException: No existing session"),
    ('ValueError("Timeout value out of range")', 1, "ValueError: Timeout value out of range"),
])
def test_unexpected_exception_is_one_line(home, error: str, code: int, shown: str) -> None:
    proc = _main(home, error, "status")
    assert proc.returncode == code, proc
    assert proc.stderr == f"bridge: internal error: {shown} — rerun with --traceback and report it\n"


@pytest.mark.parametrize("how", [["--traceback"], []], ids=["flag", "env"])
def test_traceback_on_request(home, how: list[str]) -> None:
    proc = _main(home, 'ValueError("boom")', *how, "status", env={} if how else {"BRIDGE_DEBUG": "1"})
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr and "ValueError: boom" in proc.stderr
