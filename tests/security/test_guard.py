"""`bridge guard` run exactly as sshd runs it: the request in SSH_ORIGINAL_COMMAND."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bridge.security import audit
from bridge.security.recording import file_sha256, output_text, read_cast
from tests.conftest import Home, Result
from tests.accounts import Account
from tests.security.conftest import audit_lines, files_under, run_as_policy
from tests.security.test_shellparse import BYPASSES


def test_allowed_command_runs_with_exact_output(guard: Callable[..., Result], audit_log: Path) -> None:
    result = guard("alice", "printf 'a\\0b\\n'; printf err >&2; exit 3")
    assert (result.code, result.stdout, result.stderr) == (3, b"a\0b\n", b"err")
    [entry] = audit_lines(audit_log)
    assert entry["user"] == "alice" and entry["decision"] == "allowed" and entry["exit_code"] == 3
    assert entry["action"] == "exec" and entry["source"] == "192.0.2.7" and entry["via"] == "guard"


def test_stdin_reaches_the_command(guard: Callable[..., Result]) -> None:
    assert guard("alice", "tr a-z A-Z", input=b"hello\n").stdout == b"HELLO\n"


@pytest.mark.parametrize("cmdline", BYPASSES[:16])
def test_bypasses_are_refused_in_one_line(guard: Callable[..., Result], audit_log: Path, cmdline: str) -> None:
    result = guard("ops", cmdline)
    assert result.code == 126 and result.stdout == b""
    assert result.err.count("\n") == 1 and "rule operator.no-sudo" in result.err, result
    [entry] = audit_lines(audit_log)
    assert (entry["decision"], entry["rule"], entry["exit_code"], entry["command"]) == (
        "denied", "operator.no-sudo", 126, cmdline)


def test_viewer_cannot_exec_admin_can(guard: Callable[..., Result], audit_log: Path) -> None:
    viewer = guard("vic", "id -u", role="viewer")
    assert viewer.code == 126 and "rule viewer.no-exec" in viewer.err
    admin = guard("root", "sudo -n true 2>/dev/null; id -u", role="admin")
    assert admin.code == 0 and admin.out.strip().isdigit()
    assert [e["decision"] for e in audit_lines(audit_log)] == ["denied", "allowed"]
    assert audit.verify(audit_log).ok


def test_unknown_user_and_broken_policy_fail_closed(guard: Callable[..., Result], tmp_path: Path) -> None:
    assert "rule unknown-user" in guard("nobody", "ls", role=None).err
    broken = tmp_path / "policy.yaml"
    broken.write_text("roles: [oops\n")
    result = guard("alice", "ls", policy=broken)
    assert result.code == 126 and "rule policy-error" in result.err


def test_policy_users_map_binds_over_the_key(guard: Callable[..., Result], tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("users:\n  alice: viewer\n")
    assert guard("alice", "ls", role="admin", policy=policy).code == 126


@pytest.fixture
def repos(runner: Account) -> Iterator[tuple[Path, Path, Path]]:
    """Two bare repos the run_as account owns, and a policy that lets `dev` use only the first workspace."""
    root = Path(tempfile.mkdtemp(prefix="bridge-repos-", dir="/var/tmp"))
    root.chmod(0o755)
    mine, other = root / "srv/app", root / "srv/other"
    for ws in (mine, other):
        subprocess.run(["git", "init", "-q", "--bare", str(ws / "repo.git")], check=True)
    subprocess.run(["chown", "-R", f"{runner.uid}:{runner.gid}", str(root / "srv")], check=True)
    policy = run_as_policy(root, runner, f"{{dev: {{role: operator, workspaces: ['{mine}']}}}}")
    yield mine, other, policy
    shutil.rmtree(root)


def test_git_limited_to_allowed_workspaces(guard: Callable[..., Result], audit_log: Path, repos) -> None:
    mine, other, policy = repos
    pull = guard("dev", f"git-upload-pack '{mine}/repo.git'", policy=policy, input=b"0000")
    assert pull.code == 0 and pull.stdout.endswith(b"0000")
    push = guard("dev", f"git-receive-pack '{mine}/repo.git'", policy=policy, input=b"0000")
    assert push.code == 0
    refused = guard("dev", f"git-receive-pack '{mine}/../other/repo.git'", policy=policy)
    assert refused.code == 126 and "rule operator.workspaces" in refused.err and refused.stdout == b""
    entries = audit_lines(audit_log)
    assert [(e["action"], e["decision"]) for e in entries] == [("pull", "allowed"), ("push", "allowed"), ("push", "denied")]
    assert entries[2]["workspace"] == str(other / "repo.git")


def test_git_verb_with_extra_words_is_checked_as_exec(guard: Callable[..., Result], repos) -> None:
    mine, _other, policy = repos
    result = guard("dev", f"git-upload-pack '{mine}/repo.git'; sudo id", policy=policy)
    assert result.code == 126 and "operator.no-sudo" in result.err


def test_shell_is_recorded_on_a_pty(guard: Callable[..., Result], audit_log: Path, home: Home) -> None:
    result = guard("alice", None, input=b"echo hello-$((6*7))\nexit 5\n", env={"SHELL": "/bin/sh"})
    assert result.code == 5 and b"hello-42" in result.stdout
    [entry] = audit_lines(audit_log)
    assert entry["action"] == "shell" and entry["decision"] == "allowed"
    cast = Path(entry["recording"])
    assert cast.parent == audit_log.parent / "recordings" and entry["recording_sha256"] == file_sha256(cast)
    assert "hello-42" in output_text(cast) and read_cast(cast)[0]["version"] == 2


def test_viewer_gets_no_shell(guard: Callable[..., Result]) -> None:
    result = guard("vic", None, role="viewer", input=b"id\n")
    assert result.code == 126 and "rule viewer.no-shell" in result.err


def test_secret_in_env_reaches_no_file_bridge_wrote(guard: Callable[..., Result], audit_log: Path, home: Home) -> None:
    secret = "s3cr3t-value-42"
    run = guard("alice", f"env API_TOKEN={secret} sh -c 'echo ok'", env={"DB_PASSWORD": "pw-" + secret})
    assert run.code == 0 and run.out == "ok\n"
    shell = guard("alice", None, input=f"echo {secret}\nexit\n".encode(), env={"DEPLOY_KEY": secret})
    assert shell.code == 0 and secret.encode() in shell.stdout
    written = files_under(audit_log.parent, home.path / ".local/state")
    assert any(p.suffix == ".cast" for p in written) and audit_log in written
    assert not [p for p in written if secret.encode() in p.read_bytes()]
    assert "API_TOKEN=***" in audit_log.read_text()


def test_a_policy_others_may_write_is_not_trusted(guard: Callable[..., Result], runner: Account,
                                                  tmp_path: Path) -> None:
    policy = run_as_policy(tmp_path, runner)
    os.chown(policy, runner.uid, runner.gid)
    result = guard("alice", "id -u", policy=policy)
    assert result.code == 126 and "rule policy-error" in result.err and "not trusted" in result.err


def test_the_command_gets_only_allow_listed_variables(guard: Callable[..., Result], runner: Account) -> None:
    client = {"LANG": "C.UTF-8", "LC_ALL": "C", "TERM": "xterm", "GIT_PROTOCOL": "version=2",
              "LD_PRELOAD": "/x.so", "BASH_ENV": "/x", "ENV": "/x", "PYTHONPATH": "/x", "PERL5OPT": "-d",
              "GIT_CONFIG_COUNT": "1", "BRIDGE_POLICY": "/x", "FOO": "bar", "PATH": "/evil", "HOME": "/evil"}
    result = guard("alice", "env", env=client)
    seen = dict(line.split("=", 1) for line in result.out.splitlines())
    assert {k: seen[k] for k in ("LANG", "LC_ALL", "TERM", "GIT_PROTOCOL")} == {
        "LANG": "C.UTF-8", "LC_ALL": "C", "TERM": "xterm", "GIT_PROTOCOL": "version=2"}
    assert not {"LD_PRELOAD", "BASH_ENV", "ENV", "PYTHONPATH", "PERL5OPT", "GIT_CONFIG_COUNT", "BRIDGE_POLICY",
                "FOO"} & set(seen)
    assert (seen["HOME"], seen["USER"], seen["PATH"]) == (str(runner.home), runner.name, "/usr/local/bin:/usr/bin:/bin")


def test_recording_input_is_set_by_the_key_line_not_the_environment(guard: Callable[..., Result],
                                                                    audit_log: Path) -> None:
    typed = b"echo typed-$((2*21))\nexit\n"
    guard("alice", None, input=typed, env={"BRIDGE_RECORD_INPUT": "1"})
    guard("alice", None, input=typed, args=("--record-input",))
    (_h1, first), (_h2, second) = (read_cast(Path(e["recording"])) for e in audit_lines(audit_log))
    assert not [e for e in first if e[1] == "i"], "BRIDGE_RECORD_INPUT in the session must not turn it on"
    assert [e for e in second if e[1] == "i"]
