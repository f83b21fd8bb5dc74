"""bridge/ type-checks: mypy, configured in pyproject.toml's [tool.mypy], reports no error.

Run in CI like any test (mypy and the paramiko/PyYAML stubs are in the `test` extra), so a change
that breaks a type fails the suite, not a later reader.
"""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_mypy_finds_no_error_in_bridge() -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy", "bridge"], cwd=REPO, capture_output=True, text=True,
                          timeout=280)
    assert proc.returncode == 0, f"mypy exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    assert "Success: no issues found" in proc.stdout
