"""One command model for `bridge exec`: the keeper path, the in-process fast path and Typer agree."""
from __future__ import annotations

from tests.exec.exec_fixtures import Target, keeper_pid, target  # noqa: F401 - fixtures


def test_a_missing_python_file_is_one_usage_line_on_every_path(target: Target, home) -> None:
    """Through the keeper, --no-reuse and Typer (--tty is Typer's): exit 2, the cause, no traceback."""
    warm = target.exec("--python", "missing.py")
    direct = target.exec("--no-reuse", "--python", "missing.py")
    assert (warm.code, warm.err) == (direct.code, direct.err) == (2, warm.err)
    assert warm.err.startswith("bridge: error: cannot read missing.py: No such file or directory\n"), warm.err
