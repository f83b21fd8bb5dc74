"""`bridge rollback`: `current` goes back to an earlier release; `--list` shows them."""
from __future__ import annotations

from pathlib import Path

from tests.sync.test_push import Root, commit, server_root, ssh_ws  # noqa: F401 - fixtures


def test_rollback_to_previous_and_to_a_named_release(bridge, ssh_ws: Path, server_root: Root) -> None:
    assert bridge("push", cwd=ssh_ws).code == 0
    first = server_root.current_name()
    commit(ssh_ws, {"app/main.py": "print('v2')\n"})
    assert bridge("push", cwd=ssh_ws).code == 0
    second = server_root.current_name()
    listed = bridge("rollback", "--list", cwd=ssh_ws)
    assert listed.code == 0 and first in listed.out and f"*\t{second}" in listed.out
    back = bridge("rollback", cwd=ssh_ws)
    assert back.code == 0, back
    assert server_root.current_name() == first and (server_root.current / "app/main.py").read_text() == "print('v1')\n"
    forward = bridge("rollback", "--to", second, cwd=ssh_ws)
    assert forward.code == 0 and server_root.current_name() == second


def test_rollback_to_an_unknown_release_is_refused(bridge, ssh_ws: Path, server_root: Root) -> None:
    assert bridge("push", cwd=ssh_ws).code == 0
    current = server_root.current_name()
    result = bridge("rollback", "--to", "nope; rm -rf /", cwd=ssh_ws)
    assert result.code == 1, result
    assert "rollback refused" in result.err and server_root.current_name() == current
