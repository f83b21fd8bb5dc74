"""`bridge exec --sandbox` and `CodeExecutor(sandbox=True)`: the exec front end wired to bridge.exec.sandbox.

Needs the real dockerd and image that tests/exec/sandbox_env.py starts (the sandbox's own tests cover
its limits; these check that exec hands over command, stdin, env and exit code over SSH and locally).
"""
from __future__ import annotations

from bridge.exec import CodeExecutor
from tests.exec.exec_fixtures import Target, target  # noqa: F401 - fixtures
from tests.exec.sandbox_env import engine  # noqa: F401 - fixture


def test_exec_sandbox_over_ssh(engine, target: Target) -> None:
    result = target.exec("--sandbox", "--env", "X=a b", "--", "sh", "-c", 'id -u; echo "$X"; cat; exit 3',
                         input="fed\n")
    assert (result.code, result.out) == (3, "65534\na b\nfed\n"), result


def test_code_executor_sandbox_locally_and_over_ssh(engine, target: Target) -> None:
    for name in ("here", "prod"):
        result = CodeExecutor(workspace=target.workspace, target=name, sandbox=True).run_python(
            "import os; print(os.getuid())")
        assert (result.exit_code, result.stdout, result.host) == (0, "65534\n", name), result
