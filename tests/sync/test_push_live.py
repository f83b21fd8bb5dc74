"""A push to a group on a terminal: one live row per host, a host's full log only when it fails (or -v);
piped, every line of every host."""
from __future__ import annotations

import os
import pty
import re
import subprocess
from pathlib import Path

from tests.conftest import BRIDGE, Home, write_config
from tests.sync.test_push import commit, git

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def group_workspace(bridge, workspace: Path, tmp_path: Path) -> None:
    """Hosts a and b; b's deploy command fails (its root holds a `fail` file), both print LOUD-OUTPUT."""
    git(workspace, "init", "-q", "-b", "main")
    write_config(workspace, f"workspace: app\nremotes:\n  a: local://{tmp_path / 'a'}\n  b: local://{tmp_path / 'b'}\n"
                            "groups:\n  web: [a, b]\ndeploy:\n  commands: ['echo LOUD-OUTPUT; test ! -e ../../fail']\n")
    commit(workspace, {"x": "1\n"}, "first")
    assert bridge("init", cwd=workspace).code == 0
    (tmp_path / "b" / "fail").write_text("")


def on_terminal(args: list[str], cwd: Path, home: Home) -> tuple[int, str]:
    master, slave = pty.openpty()
    env = {**home.env, "TERM": "xterm", "COLUMNS": "160"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([*BRIDGE, *args], cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=60), ANSI.sub("", b"".join(chunks).decode(errors="replace"))


def test_a_terminal_shows_rows_and_only_the_failed_hosts_log(bridge, workspace: Path, tmp_path: Path,
                                                            home: Home) -> None:
    group_workspace(bridge, workspace, tmp_path)
    code, out = on_terminal(["push", "--on", "web"], workspace, home)
    assert code == 1, out
    assert "[b]  | LOUD-OUTPUT" in out and "[a]  | LOUD-OUTPUT" not in out
    assert re.search(r"a\s+\S*\s*[\d.]+s\s+deployed", out) and re.search(r"b\s+.*failed", out)
    code, verbose = on_terminal(["push", "--on", "web", "-v", "--redeploy"], workspace, home)
    assert "[a]  | LOUD-OUTPUT" in verbose


def test_piped_output_keeps_every_hosts_lines(bridge, workspace: Path, tmp_path: Path) -> None:
    group_workspace(bridge, workspace, tmp_path)
    result = bridge("push", "--on", "web", cwd=workspace)
    assert result.code == 1
    assert "[a]  | LOUD-OUTPUT" in result.out and "[b]  | LOUD-OUTPUT" in result.out
