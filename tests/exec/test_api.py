"""The Python API against a real sshd and locally: CodeExecutor.run_bash / run_python → ExecResult."""
from __future__ import annotations

from bridge.exec import CodeExecutor, ExecResult
from tests.exec.exec_fixtures import Target, target  # noqa: F401 - fixtures


def test_run_bash_and_python_over_ssh(target: Target) -> None:
    with CodeExecutor(workspace=target.workspace) as ex:
        bash = ex.run_bash("echo \"$GREETING\"; echo oops >&2; exit 3", env={"GREETING": "hi there"})
        python = ex.run_python("import sys; print(sys.version_info[0]); sys.exit(4)")
    assert isinstance(bash, ExecResult)
    assert (bash.exit_code, bash.stdout, bash.stderr, bash.host) == (3, b"hi there\n", b"oops\n", "prod")
    assert (python.exit_code, python.stdout) == (4, b"3\n")
    assert target.server.accepted_connections() == 1  # one executor, one connection


def test_timeout_is_reported_not_raised(target: Target) -> None:
    result = CodeExecutor(workspace=target.workspace, target="prod").run_bash("sleep 30", timeout=1)
    assert (result.exit_code, result.timed_out, result.status) == (124, True, "timeout")


def test_local_target_and_no_workspace(target: Target, tmp_path, monkeypatch) -> None:
    local = CodeExecutor(workspace=target.workspace, target="here").run_python("print('local')")
    assert (local.exit_code, local.stdout, local.host) == (0, b"local\n", "here")
    monkeypatch.chdir(tmp_path)
    bare = CodeExecutor().run_bash("echo $((6 * 7))")
    assert (bare.exit_code, bare.stdout, bare.host) == (0, b"42\n", "local")
