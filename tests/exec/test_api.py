"""The Python API against a real sshd and locally: CodeExecutor.run_bash / run_python → ExecResult."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bridge.errors import UsageError
from bridge.exec import CodeExecutor, ExecResult
from tests.exec.exec_fixtures import Target, target  # noqa: F401 - fixtures


def test_run_bash_and_python_over_ssh(target: Target) -> None:
    with CodeExecutor(workspace=target.workspace) as ex:
        bash = ex.run_bash("echo \"$GREETING\"; echo oops >&2; exit 3", env={"GREETING": "hi there"})
        python = ex.run_python("import sys; print(sys.version_info[0]); sys.exit(4)")
    assert isinstance(bash, ExecResult)
    assert (bash.exit_code, bash.stdout, bash.stderr, bash.host) == (3, "hi there\n", "oops\n", "prod")
    assert (python.exit_code, python.stdout) == (4, "3\n")
    assert target.server.accepted_connections() == 1  # one executor, one connection


def test_timeout_is_reported_not_raised(target: Target) -> None:
    result = CodeExecutor(workspace=target.workspace, target="prod").run_bash("sleep 30", timeout=1)
    assert (result.exit_code, result.timed_out, result.status) == (124, True, "timeout")


@pytest.mark.parametrize("name", ["prod", "here"])
def test_output_is_text_the_bytes_stay_reachable_and_the_result_is_json(target: Target, name: str) -> None:
    raw = b"caf\xc3\xa9 \xff\n"  # UTF-8, then a byte no UTF-8 text has
    result = CodeExecutor(workspace=target.workspace, target=name).run_bash(
        "printf 'caf\\303\\251 \\377\\n'; printf 'warn\\n' >&2")
    assert (result.stdout, result.stderr) == ("caf\u00e9 \ufffd\n", "warn\n")
    assert (result.stdout_bytes, result.stderr_bytes) == (raw, b"warn\n")
    assert result.tail(stream="stdout") == "caf\u00e9 \ufffd"
    row = json.loads(json.dumps(result.to_dict()))
    assert (row["host"], row["exit_code"], row["stdout"], row["status"]) == (name, 0, "caf\u00e9 \ufffd\n", "ok")


def running(pid: int) -> bool:
    """Whether `pid` still runs: a zombie has ended (an orphan waits for PID 1 to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("name", ["prod", "here"])
def test_a_timeout_returns_once_the_remote_tree_has_ended(target: Target, name: str, tmp_path) -> None:
    # a background child too: the whole tree ends at the timeout, and nothing is left to write the mark
    mark, pids = tmp_path / f"late-{name}", tmp_path / f"pids-{name}"
    result = CodeExecutor(workspace=target.workspace, target=name).run_bash(
        f"echo $$ > {pids}; (sleep 2; touch {mark}) & echo $! >> {pids}; sleep 5", timeout=1)
    assert (result.exit_code, result.timed_out, result.status) == (124, True, "timeout"), result
    assert result.duration >= 1, result  # the run's own figure covers the whole timeout
    # the servers are this machine: when the result is back, the shell and its child are gone
    alive = [pid for pid in map(int, pids.read_text().split()) if running(pid)]
    assert alive == [], f"still running after the result: {alive}"
    time.sleep(1.5)  # past the background child's 2 s
    assert not mark.exists()


def test_a_negative_timeout_is_refused(target: Target) -> None:
    with pytest.raises(UsageError, match="timeout -1 is out of range"):
        CodeExecutor(workspace=target.workspace, target="here").run_bash("true", timeout=-1)


def test_local_target_and_no_workspace(target: Target, tmp_path, monkeypatch) -> None:
    local = CodeExecutor(workspace=target.workspace, target="here").run_python("print('local')")
    assert (local.exit_code, local.stdout, local.host) == (0, "local\n", "here")
    monkeypatch.chdir(tmp_path)
    bare = CodeExecutor().run_bash("echo $((6 * 7))")
    assert (bare.exit_code, bare.stdout, bare.host) == (0, "42\n", "local")
