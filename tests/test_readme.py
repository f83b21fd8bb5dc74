"""README's main loop and Python API, run as written on the local:// default."""
from __future__ import annotations

import subprocess
import sys


def test_main_loop_init_push_exec_status(bridge, workspace) -> None:
    (workspace / "app.py").write_text("print('hello from bridge')\n")
    assert bridge("init", cwd=workspace).code == 0
    subprocess.run(["git", "add", "-A"], cwd=workspace, check=True)
    subprocess.run(["git", "commit", "-qm", "first"], cwd=workspace, check=True)
    pushed = bridge("push", cwd=workspace)
    assert pushed.code == 0, pushed
    ran = bridge("exec", "--", "python3", "app.py", cwd=workspace)
    assert (ran.code, ran.out) == (0, "hello from bridge\n"), ran
    assert bridge("status", cwd=workspace).code == 0


def test_python_api_snippet(bridge, workspace, home) -> None:
    assert bridge("init", cwd=workspace).code == 0
    code = (
        "from bridge.exec import CodeExecutor, ExecResult\n"
        "ex = CodeExecutor(workspace='.', target='local')\n"
        "r = ex.run_bash('echo hi; echo oops >&2; exit 3', timeout=10, env={'LANG': 'C'})\n"
        "assert isinstance(r, ExecResult)\n"
        "print(r.exit_code, r.stdout, r.stderr, r.timed_out, r.host)\n"
        "print(ex.run_python('print(6 * 7)').stdout)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=workspace, capture_output=True, text=True,
                          env=home.env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "3 hi\n oops\n False local\n42\n\n"
