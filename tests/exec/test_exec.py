"""`bridge exec` on one host against a real sshd: exit codes, streams, bytes, stdin, timeout, env, quoting."""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid

import pytest

from tests.conftest import BRIDGE, write_config
from tests.exec.exec_fixtures import Target, target  # noqa: F401 - fixtures

WAYS = {"keeper": [], "direct": ["--no-reuse"]}


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("code", [0, 1, 42])
def test_exit_code_is_the_remote_commands(target: Target, way: str, code: int) -> None:
    result = target.exec(*WAYS[way], "--", "sh", "-c", f"exit {code}")
    assert result.code == code, result


@pytest.mark.parametrize("way", WAYS)
def test_killed_by_a_signal_exits_128_plus_n(target: Target, way: str) -> None:
    result = target.exec(*WAYS[way], "--", "sh", "-c", "kill -TERM $$")
    assert result.code == 128 + 15, result


@pytest.mark.parametrize("way", WAYS)
def test_stdout_and_stderr_stay_apart(target: Target, way: str) -> None:
    result = target.exec(*WAYS[way], "--", "sh", "-c", "echo out; echo err >&2; echo out2")
    assert (result.out, result.err) == ("out\nout2\n", "err\n")


@pytest.mark.parametrize("way", WAYS)
def test_50_mb_of_binary_output_arrive_byte_exact(target: Target, way: str, tmp_path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(50 * 1024 * 1024))
    result = target.exec(*WAYS[way], "--", "cat", str(blob))
    assert result.code == 0
    assert hashlib.sha256(result.stdout).hexdigest() == hashlib.sha256(blob.read_bytes()).hexdigest()


@pytest.mark.parametrize("way", WAYS)
def test_stdin_is_forwarded(target: Target, way: str) -> None:
    data = b"hi\n" + bytes(range(256)) * 1000
    result = target.exec(*WAYS[way], "--", "cat", input=data)
    assert result.stdout == data


def test_no_stdin_means_eof_at_once(target: Target) -> None:
    proc = subprocess.run([sys.executable, "-m", "bridge", "exec", "--", "cat"], cwd=target.workspace, env=dict(os.environ),
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    assert (proc.returncode, proc.stdout) == (0, b"")


@pytest.mark.parametrize("way", WAYS)
def test_timeout_ends_the_whole_remote_tree(target: Target, way: str) -> None:
    marker = f"{900 + int(uuid.uuid4().int % 99)}.{uuid.uuid4().int % 10**6}"
    began = time.monotonic()
    result = target.exec(*WAYS[way], "--timeout", "1", "--", "sh", "-c", f"sleep {marker} & sleep {marker}")
    assert result.code == 124, result
    assert "timed out" in result.err
    assert time.monotonic() - began < 15
    time.sleep(0.3)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"sleep {marker}" not in ps


@pytest.mark.parametrize("way", WAYS)
def test_env_values_arrive_intact(target: Target, way: str) -> None:
    values = {"A": "two words", "B": "it's \"quoted\" $HOME `x`", "C": "line1\nline2", "D": "ünïcødé €"}
    flags = [f for k, v in values.items() for f in ("--env", f"{k}={v}")]
    code = "import os, json; print(json.dumps({k: os.environ[k] for k in 'ABCD'}))"
    result = target.exec(*WAYS[way], *flags, "--", "python3", "-c", code)
    assert json.loads(result.out) == values, result


@pytest.mark.parametrize("way", WAYS)
def test_an_argument_with_shell_syntax_stays_one_argument(target: Target, way: str, tmp_path) -> None:
    canary = tmp_path / "canary"
    canary.mkdir()
    nasty = f"x; rm -rf {canary}; echo $(id) `id` && true"
    result = target.exec(*WAYS[way], "--", "printf", "%s\n", nasty)
    assert result.out == nasty + "\n"
    assert canary.is_dir()


def test_runs_in_deployed_current_with_its_environment(target: Target) -> None:
    current = target.deploy / "current"
    (current / ".venv" / "bin").mkdir(parents=True)
    (current / "node_modules" / ".bin").mkdir(parents=True)
    result = target.exec("--", "sh", "-c", 'pwd; echo "$VIRTUAL_ENV"; echo "$PATH"')
    pwd, venv, path = result.out.splitlines()
    assert (pwd, venv) == (str(current), f"{current}/.venv")
    assert path.startswith(f"{current}/.venv/bin:{current}/node_modules/.bin:")  # the order the app runs with


def test_cwd_defaults_to_home_without_a_deploy_and_follows_cwd(target: Target) -> None:
    assert target.exec("--", "pwd").out.strip() == os.path.expanduser("~root")
    assert target.exec("--cwd", "/etc", "--", "pwd").out == "/etc\n"
    missing = target.exec("--cwd", "/no/such/dir", "--", "pwd")
    assert (missing.code, missing.out) == (2, ""), missing
    assert missing.err.startswith("bridge: error: prod: cannot enter --cwd /no/such/dir (missing, or not permitted)")


def _typo_remote(target: Target) -> str:
    """Remotes `typo` (ssh) and `typo-here` (local) whose path was never made, and group `both`; that path."""
    missing = f"{target.deploy}-typo"
    write_config(target.workspace, f"workspace: w\nremotes:\n  prod: {{url: \"{target.server.url(str(target.deploy))}\"}}\n"
                                   f"  typo: {{url: \"{target.server.url(missing)}\"}}\n"
                                   f"  typo-here: {{url: \"local://{missing}\"}}\n"
                                   "default: prod\ngroups:\n  both: [prod, typo]\n")
    return missing


@pytest.mark.parametrize("way", WAYS)
def test_a_missing_remote_path_runs_nothing_in_the_login_directory(target: Target, way: str, tmp_path) -> None:
    missing = _typo_remote(target)
    marker = tmp_path / "ran"
    for name in ("typo", "typo-here"):
        result = target.exec(*WAYS[way], name, "--", "sh", "-c", f"pwd > {marker}")
        assert (result.code, result.out, marker.exists()) == (2, "", False), result
        assert result.err == (f"bridge: error: {name}: remote path {missing} does not exist; nothing was run\n"
                              "  hint: `bridge init` or a first `bridge push` makes it; else fix its url in bridge.yaml, or pass --cwd DIR\n")
        code = target.exec(*WAYS[way], name, "--python", "-", input=f"open({str(marker)!r}, 'w')")
        assert (code.code, marker.exists()) == (2, False) and "does not exist" in code.err, code
    elsewhere = target.exec(*WAYS[way], "typo", "--cwd", str(tmp_path), "--", "pwd")
    assert (elsewhere.code, elsewhere.out) == (0, f"{tmp_path}\n"), elsewhere  # the hint's way out works


@pytest.mark.parametrize("way", WAYS)
def test_a_missing_remote_path_fails_that_host_of_a_fleet(target: Target, way: str, tmp_path) -> None:
    missing = _typo_remote(target)
    result = target.exec(*WAYS[way], "--on", "both", "--json", "--", "echo", "ran")
    rows = {row["host"]: row for row in map(json.loads, result.out.splitlines())}
    assert result.code == 1, result
    assert (rows["prod"]["exit_code"], rows["prod"]["stdout"]) == (0, "ran\n")
    assert (rows["typo"]["exit_code"], rows["typo"]["stdout"]) == (2, "")
    assert f"remote path {missing} does not exist" in rows["typo"]["stderr"]


def test_a_missing_remote_path_in_shell_and_code_executor(target: Target) -> None:
    from bridge.exec import CodeExecutor

    missing = _typo_remote(target)
    shell = target.run("shell", "typo", cwd=target.workspace, input="echo ran-$((20 + 22))\n")
    assert shell.code == 2 and "ran-42" not in shell.out and f"remote path {missing}" in shell.out, shell
    for name in ("typo", "typo-here"):
        result = CodeExecutor(workspace=target.workspace, target=name).run_bash("echo ran")
        assert (result.exit_code, result.stdout_bytes, result.status) == (2, b"", "failed"), result
        assert f"remote path {missing} does not exist" in result.stderr


def test_parent_steps_in_remote_paths_are_refused_not_followed(target: Target) -> None:
    config = target.workspace / "bridge.yaml"
    before = config.read_bytes()
    added = target.run("remote", "add", "up", target.server.url(f"{target.deploy}/../elsewhere"), cwd=target.workspace)
    assert added.code == 2 and "climbs with `..`" in added.err and config.read_bytes() == before, added
    config.write_text(before.decode().replace("remotes:\n", "remotes:\n  up: local:///srv/app/../x\n", 1))
    loaded = target.exec("up", "--", "true")
    assert loaded.code == 2 and f"{config}:3: remotes.up.url: the path of `local:///srv/app/../x` climbs" in loaded.err
    config.write_bytes(before)
    for way in WAYS.values():
        cwd = target.exec(*way, "--cwd", f"{target.deploy}/..", "--", "pwd")
        assert (cwd.code, cwd.out) == (2, "") and "--cwd" in cwd.err and "`..`" in cwd.err, cwd


@pytest.mark.parametrize("way", WAYS)
def test_python_code_from_stdin_and_file(target: Target, way: str, tmp_path) -> None:
    script = tmp_path / "job.py"
    script.write_text("import sys\nprint('file', sys.argv[0])\nsys.exit(3)\n")
    from_file = target.exec(*WAYS[way], "--python", str(script))
    assert (from_file.code, from_file.out) == (3, "file -\n")
    from_stdin = target.exec(*WAYS[way], "--python", "-", input="print(6 * 7)")
    assert from_stdin.out == "42\n"


def test_local_target_runs_the_same_way(target: Target) -> None:
    result = target.exec("here", "--env", "X=a b", "--", "sh", "-c", 'echo "$X"; echo e >&2; exit 5')
    assert (result.code, result.out, result.err) == (5, "a b\n", "e\n")


def test_unreachable_host_exits_255_with_a_hint(target: Target) -> None:
    target.server.stop()
    result = target.exec("--", "true")
    assert result.code == 255
    assert "cannot connect" in result.err and "hint:" in result.err


def test_tty_gives_the_command_a_terminal(target: Target) -> None:
    result = target.exec("--tty", "--", "sh", "-c", "tty; exit 7")
    assert result.code == 7
    assert result.out.startswith("/dev/pts/")


def test_sudo_runs_as_root(target: Target) -> None:
    result = target.exec("--sudo", "--", "id", "-u")
    assert (result.code, result.out.strip()) == (0, "0")


def test_usage_errors_exit_2(target: Target) -> None:
    assert target.exec().code == 2
    assert target.exec("--env", "NOEQUALS", "--", "true").code == 2


def test_shell_is_interactive_and_recorded(target: Target, home) -> None:
    result = target.run("shell", cwd=target.workspace, input="echo from-the-shell; exit 3\n")
    assert result.code == 3, result
    assert "from-the-shell" in result.out
    casts = list((home.path / ".local/state/bridge/recordings").glob("*.cast"))
    assert len(casts) == 1 and "from-the-shell" in casts[0].read_text()


def test_tty_session_masks_secret_env_in_its_recording(target: Target, home) -> None:
    result = target.exec("--tty", "--env", "API_TOKEN=s3cr3t-value-123", "--", "sh", "-c", 'echo "$API_TOKEN"')
    assert result.code == 0 and "s3cr3t-value-123" in result.out
    cast = next((home.path / ".local/state/bridge/recordings").glob("*.cast")).read_text()
    assert "s3cr3t-value-123" not in cast


def _settle(path) -> None:
    """Date bridge.yaml back a minute, as an edit made a while ago: then a run caches it."""
    when = time.time() - 60
    os.utime(path, (when, when))


def test_an_edit_to_bridge_yaml_is_seen_on_the_next_run(target: Target, home) -> None:
    config = target.workspace / "bridge.yaml"
    _settle(config)
    assert target.exec("--no-reuse", "--", "echo", "one").out == "one\n"
    assert list((home.path / ".cache" / "bridge").glob("*.marshal")), "the good config was cached"
    config.write_text(config.read_text().replace("default: prod", "default: here"))
    _settle(config)
    result = target.exec("--no-reuse", "--", "sh", "-c", 'echo "${SSH_CONNECTION:-local}"')
    assert (result.code, result.out) == (0, "local\n"), result


def test_a_broken_bridge_yaml_after_a_cached_good_one_names_file_and_line(target: Target) -> None:
    config = target.workspace / "bridge.yaml"
    _settle(config)
    assert target.exec("--no-reuse", "--", "true").code == 0
    config.write_text(config.read_text().replace("default: prod", "default: [prod"))
    _settle(config)
    result = target.exec("--no-reuse", "--", "true")
    assert result.code == 2, result
    assert f"{config}:" in result.err and "invalid YAML" in result.err


def _shell(target: Target, line: str) -> subprocess.CompletedProcess:
    """`line` run by bash in the workspace, with `BRIDGE` standing for the real bridge command."""
    bridge = " ".join(map(shlex.quote, BRIDGE))
    return subprocess.run(["bash", "-c", line.replace("BRIDGE", bridge)], cwd=target.workspace,
                          env=dict(os.environ), capture_output=True, timeout=60)


@pytest.mark.parametrize("way", WAYS)
def test_a_reader_that_goes_away_ends_the_run(target: Target, way: str) -> None:
    """`bridge exec -- yes | head`: bridge ends with 1 at once and the remote command is gone."""
    marker = f"bridge-yes-{uuid.uuid4().hex[:8]}"
    proc = _shell(target, f"BRIDGE exec {' '.join(WAYS[way])} -- yes {marker} | head -c 4; echo \" ${{PIPESTATUS[0]}}\"")
    assert proc.stdout == b"brid 1\n", proc
    assert b"Traceback" not in proc.stderr, proc.stderr
    time.sleep(0.3)
    assert f"yes {marker}" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("closed", [">&-", "2>&-", "<&-"])
def test_a_closed_std_fd_loses_only_that_stream(target: Target, way: str, closed: str) -> None:
    """A closed stdout must not become the SSH socket's number (output written into the connection)."""
    proc = _shell(target, f"BRIDGE exec {' '.join(WAYS[way])} -- sh -c 'echo out; echo err >&2' {closed}; echo \"rc=$?\"")
    out = b"" if closed == ">&-" else b"out\n"
    err = b"" if closed == "2>&-" else b"err\n"
    assert (proc.stdout, proc.stderr) == (out + b"rc=0\n", err), proc


def test_output_to_a_file_lands_whole(target: Target, tmp_path) -> None:
    """The keeper writes a single host's output to the client's own stdout, here a regular file."""
    out = tmp_path / "out.bin"
    proc = _shell(target, f"BRIDGE exec -- head -c 3000000 /dev/urandom > {out}; "
                          f"BRIDGE exec -- printf tail >> {out}")
    assert proc.returncode == 0, proc
    data = out.read_bytes()
    assert len(data) == 3000004 and data.endswith(b"tail")


def test_ctrl_c_ends_a_local_run_under_a_timeout_tree_and_all(target: Target, tmp_path) -> None:
    # a local run with a timeout runs under the servers' timeout wrapper: Ctrl-C must still end its
    # whole tree, a part that ignores SIGTERM included
    mark = tmp_path / "late"
    proc = subprocess.Popen([*BRIDGE, "exec", "here", "--timeout", "60", "--", "sh", "-c",
                             f"trap '' TERM; echo started; sleep 2; touch {mark}"], cwd=target.workspace,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))
    assert proc.stdout.readline() == b"started\n"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 130
    time.sleep(2.5)  # past the command's own 2 s
    assert not mark.exists()


def test_a_local_shell_gets_a_terminal_and_is_recorded_like_a_remote_one(target: Target, home) -> None:
    result = target.run("shell", "here", cwd=target.workspace, input="tty; echo local-$((40 + 2)); exit 3\n")
    assert result.code == 3, result
    assert "/dev/pts/" in result.out and "local-42" in result.out
    casts = list((home.path / ".local/state/bridge/recordings").glob("*.cast"))
    assert len(casts) == 1 and "local-42" in casts[0].read_text()
