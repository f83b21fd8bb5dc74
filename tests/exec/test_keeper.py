"""The connection keeper: reuse proven from sshd's own log, recovery from a killed keeper or stale socket."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO, keeper_lock, keeper_socket
from tests.exec.exec_fixtures import Target, keeper_pid, target  # noqa: F401 - fixtures


def _runtime(home) -> Path:
    return Path(home.env["XDG_RUNTIME_DIR"]) / "bridge"


def test_second_call_reuses_the_connection(target: Target, home) -> None:
    for word in ("one", "two", "three"):
        result = target.exec("--", "echo", word)
        assert (result.code, result.out) == (0, f"{word}\n"), result
    assert target.server.accepted_connections() == 1


def test_socket_is_private(target: Target, home) -> None:
    target.exec("--", "true")
    folder = _runtime(home)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(keeper_socket(folder).stat().st_mode) == 0o600


def test_killed_keeper_then_next_call_works(target: Target, home) -> None:
    assert target.exec("--", "true").code == 0
    pid = keeper_pid(keeper_lock(_runtime(home)))
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid)
    assert keeper_socket(_runtime(home)).exists()  # stale: nobody listens any more
    result = target.exec("--", "echo", "again")
    assert (result.code, result.out) == (0, "again\n"), result
    assert keeper_pid(keeper_lock(_runtime(home))) != pid
    assert target.server.accepted_connections() == 2


def test_stale_socket_file_is_replaced(target: Target, home) -> None:
    folder = _runtime(home)
    folder.mkdir(mode=0o700, parents=True)
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(keeper_socket(folder)))  # bound, never listening, then closed: a stale socket
    result = target.exec("--", "echo", "ok")
    assert (result.code, result.out) == (0, "ok\n"), result


def test_no_reuse_opts_out(target: Target, home) -> None:
    for _ in range(2):
        assert target.exec("--no-reuse", "--", "true").code == 0
    assert not keeper_socket(_runtime(home)).exists()
    assert target.server.accepted_connections() == 2


def test_server_restart_under_the_keeper(target: Target, home) -> None:
    assert target.exec("--", "true").code == 0
    target.server.restart()
    result = target.exec("--", "echo", "back")
    assert (result.code, result.out) == (0, "back\n"), result


def test_warm_path_imports_no_heavy_module(target: Target, home) -> None:
    target.exec("--", "true")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "bridge", "exec", "--", "true"],
                          cwd=target.workspace, env=home.env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "bridge.exec.fast" in imported
    assert not imported & {"typer", "rich", "paramiko", "yaml", "click", "bridge.config"}


def test_warm_path_does_not_import_typing(target: Target, home) -> None:
    """typing is ~15 ms of a ~20 ms warm run, hence `TYPE_CHECKING = False` in the warm path's modules."""
    target.exec("--", "true")
    launcher = [sys.executable, "-S", "-X", "importtime", str(REPO / "bin" / "bridge")]  # as bin/bridge runs
    proc = subprocess.run([*launcher, "exec", "--", "true"], cwd=target.workspace, env=home.env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "bridge.exec.fast" in imported and "typing" not in imported


def _wait_gone(pid: int) -> None:
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)


def test_reused_connection_is_refused_once_its_host_key_is_removed(target: Target, home) -> None:
    assert target.exec("--", "true").code == 0
    (home.ssh / "known_hosts").write_text("")
    result = target.exec("--", "true")
    assert result.code == 255
    assert "unknown" in result.err and "bridge test --trust prod" in result.err


def test_ctrl_c_on_a_warm_run_frees_the_keeper(target: Target, home) -> None:
    assert target.exec("--", "true").code == 0
    proc = subprocess.Popen([sys.executable, "-m", "bridge", "exec", "--", "sh", "-c", "echo started; sleep 30"],
                            cwd=target.workspace, env=home.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"started\n"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 130
    began = time.monotonic()
    assert target.exec("--", "echo", "next").out == "next\n"
    assert time.monotonic() - began < 10
    assert _keeper_threads(keeper_pid(keeper_lock(_runtime(home)))) == 2  # main + the pooled transport


def _keeper_threads(pid: int) -> int:
    """Threads of the keeper once its clients are done (a run stuck after Ctrl-C would add one)."""
    time.sleep(0.5)
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def test_cold_path_skips_invoke_unless_ssh_config_uses_match_exec(target: Target, home) -> None:
    argv = [sys.executable, "-X", "importtime", "-m", "bridge", "exec", "--no-reuse", "--", "true"]

    def imports_invoke() -> bool:
        proc = subprocess.run(argv, cwd=target.workspace, env=home.env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return any(line.split("|")[-1].strip().startswith("invoke.") for line in proc.stderr.splitlines())

    assert not imports_invoke()
    (home.ssh / "config").write_text("Match host nowhere exec \"true\"\n  User nobody\n")
    assert imports_invoke()


def test_keeper_exits_when_idle(target: Target, home) -> None:
    assert target.exec("--", "true", env={"BRIDGE_KEEPER_IDLE": "1"}).code == 0
    pid = keeper_pid(keeper_lock(_runtime(home)))
    deadline = time.monotonic() + 15
    while keeper_socket(_runtime(home)).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not keeper_socket(_runtime(home)).exists()
    _wait_gone(pid)
    assert target.exec("--", "echo", "restarted").out == "restarted\n"


def test_warm_runs_are_audited_by_the_keeper_with_secrets_masked(target: Target, home) -> None:
    for word in ("one", "two"):
        result = target.exec("--env", "DB_PASSWORD=hunter2-secret", "--", "echo", word)
        assert result.code == 0, result
    assert target.server.accepted_connections() == 1
    log = home.path / ".local/state/bridge/audit.jsonl"
    lines = log.read_text().splitlines()
    assert [json.loads(line)["action"] for line in lines] == ["exec", "exec"]
    assert "hunter2-secret" not in log.read_text()
    assert target.run("audit", "verify", str(log)).code == 0


def test_keeper_is_titled_and_keeps_nothing_of_its_first_client(target: Target, home) -> None:
    """The keeper is forked off the first client: ps must not keep showing that client's arguments,
    and it must hold none of its fds (an inherited pipe would keep the caller's read end from EOF)."""
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.run([sys.executable, "-m", "bridge", "exec", "--", "echo", "token-5f3a9c"],
                              cwd=target.workspace, env=home.env, capture_output=True, timeout=60,
                              pass_fds=(write_end,))
        assert (proc.returncode, proc.stdout) == (0, b"token-5f3a9c\n"), proc.stderr
        pid = keeper_pid(keeper_lock(_runtime(home)))
        title = _cmdline_once_settled(pid)
        assert title.startswith("bridge keeper") and "token-5f3a9c" not in title, title
        pipe = os.readlink(f"/proc/self/fd/{write_end}")
        held = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        assert pipe not in held
    finally:
        os.close(read_end)
        os.close(write_end)


def _cmdline_once_settled(pid: int) -> str:
    """The keeper retitles itself right after its first run; give it a moment."""
    deadline = time.monotonic() + 10
    while True:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        if "token-5f3a9c" not in title or time.monotonic() > deadline:
            return title
        time.sleep(0.05)


def test_a_cli_whose_code_changed_never_meets_the_old_keeper(target: Target, home, tmp_path: Path) -> None:
    """An upgrade (here: the same package installed afresh, as pip does) starts a keeper of its own
    version; the old one keeps serving the old CLI until it idles out."""
    import shutil

    assert target.exec("--", "echo", "old").out == "old\n"
    old = keeper_pid(keeper_lock(_runtime(home)))
    upgraded = tmp_path / "upgraded"
    shutil.copytree(REPO / "bridge", upgraded / "bridge", ignore=shutil.ignore_patterns("__pycache__"))
    new = target.exec("--", "echo", "new", env={"PYTHONPATH": str(upgraded)})
    assert (new.code, new.out) == (0, "new\n"), new
    pids = {keeper_pid(lock) for lock in _runtime(home).glob("keeper-*.lock")}
    assert old in pids and len(pids) == 2, pids  # a second keeper, the first one untouched
    assert target.server.accepted_connections() == 2  # each keeper holds its own connection
    assert target.exec("--", "echo", "old again").out == "old again\n"
    assert target.server.accepted_connections() == 2  # the old CLI is still served by the old keeper
