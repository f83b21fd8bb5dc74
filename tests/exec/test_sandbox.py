"""The sandbox against a real dockerd: every restriction of DESIGN §4 is tried from inside."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bridge.errors import ExitCode, SandboxError
from bridge.exec.sandbox import Engine, run_in_sandbox
from bridge.exec.sandbox.box import list_boxes, name_of
from tests.exec.sandbox_env import engine, spec  # noqa: F401 - fixture

CONNECT = """
import socket, sys
for host in sys.argv[1:]:
    try:
        socket.create_connection((host, {port}), timeout=2).close()
        print(host, "connected")
    except OSError as e:
        print(host, "refused", type(e).__name__)
"""


def mine(engine: Engine) -> list[str]:
    """Sandbox containers this test process owns (their names carry our pid)."""
    return [n for n in map(name_of, list_boxes(engine)) if f".{os.getpid()}." in n]


@pytest.fixture
def listener() -> int:
    """A TCP port listening on all host addresses (loopback and the docker bridge gateway)."""
    server = socket.create_server(("0.0.0.0", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):  # closed at the end of the test
            while True:
                server.accept()[0].close()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def gateway() -> str:
    """The host's address on the docker bridge (docker0); IPAM config may not list it."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "docker0"], capture_output=True, text=True, check=True)
    return out.stdout.split("inet ")[1].split("/")[0]


def test_no_network_from_inside(engine, listener) -> None:
    code = CONNECT.format(port=listener)
    result = run_in_sandbox(spec(), ["python3", "-c", code, "127.0.0.1", gateway()], engine=engine)
    assert result.status == "ok", result
    assert b"connected" not in result.stdout_bytes, result.stdout
    assert result.stdout_bytes.count(b"refused") == 2
    # the same probe with a network proves the listener is reachable at all
    control = run_in_sandbox(spec(network="bridge"), ["python3", "-c", code, gateway()], engine=engine)
    assert b"connected" in control.stdout_bytes, control


def test_root_is_read_only_and_tmp_writable(engine) -> None:
    result = run_in_sandbox(spec(), "touch /x 2>/dev/null && echo root-writable; "
                                    "echo hi > /tmp/f && cat /tmp/f", engine=engine)
    assert (result.exit_code, result.stdout_bytes) == (0, b"hi\n"), result


def test_workspace_visible_and_read_only(engine, tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print('from the workspace')\n")
    tmp_path.chmod(0o755)  # the sandbox user (65534) reads it like any other user would
    script = "python3 /workspace/app.py; touch /workspace/new 2>/dev/null && echo written"
    result = run_in_sandbox(spec(workspace=str(tmp_path)), script, engine=engine)
    assert result.stdout_bytes == b"from the workspace\n", result
    assert not (tmp_path / "new").exists()
    tmp_path.chmod(0o777)
    writable = run_in_sandbox(spec(workspace=str(tmp_path), writable=True), "echo x > /workspace/new", engine=engine)
    assert writable.exit_code == 0, writable
    assert (tmp_path / "new").read_text() == "x\n"


def test_runs_unprivileged(engine) -> None:
    result = run_in_sandbox(spec(), "id -u; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; "
                                    "ls /var/run/docker.sock 2>&1", engine=engine)
    lines = result.stdout_bytes.decode().splitlines()
    assert lines[0] == "65534"
    assert lines[1].split() == ["CapEff:", "0000000000000000"]
    assert lines[2].split() == ["NoNewPrivs:", "1"]
    assert "No such file" in lines[3]


def test_fork_bomb_stays_inside_the_pids_limit(engine) -> None:
    counter = ("import os, time\nn = 0\nwhile True:\n    try:\n        pid = os.fork()\n    except OSError:\n"
               "        break\n    if pid == 0:\n        time.sleep(60)\n        os._exit(0)\n    n += 1\nprint(n)")
    counted = run_in_sandbox(spec(pids=64), ["python3", "-c", counter], engine=engine)
    assert counted.exit_code == 0, counted
    assert 0 < int(counted.stdout_bytes) < 64
    bomb = run_in_sandbox(spec(pids=64), "b() { b | b & }; b", timeout=5, engine=engine)
    assert bomb.status in ("timeout", "ok", "failed"), bomb
    assert subprocess.run(["true"]).returncode == 0  # the host can still fork
    assert mine(engine) == []


def test_memory_limit_kills_with_oom(engine) -> None:
    result = run_in_sandbox(spec(memory="256m"), ["python3", "-c", "b = b'x' * (1 << 30)"], engine=engine)
    assert (result.exit_code, result.status) == (ExitCode.OOM, "oom"), result


def test_timeout_kills_and_removes(engine) -> None:
    began = time.monotonic()
    result = run_in_sandbox(spec(), ["sleep", "100"], timeout=2, engine=engine)
    assert (result.exit_code, result.status, result.timed_out) == (124, "timeout", True), result
    assert time.monotonic() - began < 10
    assert mine(engine) == []


def test_output_is_capped(engine) -> None:
    result = run_in_sandbox(spec(output_cap=1 << 20), "head -c 100000000 /dev/zero", engine=engine)
    assert (result.truncated, result.status) == (True, "output_truncated"), result.status
    assert len(result.stdout_bytes) == 1 << 20
    assert mine(engine) == []


def test_ten_concurrent_runs_see_nothing_of_each_other(engine) -> None:
    script = "echo $1 > /tmp/mark-$1; sleep 1; ls /tmp; ps -e -o comm= | wc -l; hostname"

    def one(i: int) -> bytes:
        result = run_in_sandbox(spec(), ["sh", "-c", script, "sh", str(i)], engine=engine)
        assert result.exit_code == 0, result
        return result.stdout_bytes

    with ThreadPoolExecutor(10) as pool:
        outputs = list(pool.map(one, range(10)))
    for i, out in enumerate(outputs):
        files, procs, _host = out.decode().splitlines()
        assert files == f"mark-{i}"
        assert int(procs) <= 4  # sh, sleep's parent shell, ps, wc: no other run's processes
    assert len({out.splitlines()[-1] for out in outputs}) == 10


def test_python_code_runs(engine) -> None:
    code = b"import json, sys\nprint(json.dumps({'sum': sum(range(10)), 'argv': sys.argv[1:]}))\n"
    result = run_in_sandbox(spec(), ["python3", "-", "a b"], stdin=code, engine=engine)
    assert result.stdout_bytes == b'{"sum": 45, "argv": ["a b"]}\n', result


def test_argv_env_and_stdin_arrive_unchanged(engine) -> None:
    args = ["a\nb", "it's", "$HOME", "*", ""]
    env = {"TOKEN": "x'y\n$(id)"}
    script = "import os, sys; print(repr(sys.argv[1:]), repr(os.environ['TOKEN']), repr(sys.stdin.read()))"
    result = run_in_sandbox(spec(), ["python3", "-c", script, *args], stdin=b"in\nput", env=env, engine=engine)
    assert result.stdout_bytes.decode() == f"{args!r} {env['TOKEN']!r} 'in\\nput'\n", result


def test_output_streams_live_and_apart(engine) -> None:
    seen: list[tuple[str, bytes, float]] = []
    began = time.monotonic()
    result = run_in_sandbox(spec(), "echo out; echo err >&2; sleep 1; echo late", engine=engine,
                            on_stdout=lambda b: seen.append(("out", b, time.monotonic() - began)),
                            on_stderr=lambda b: seen.append(("err", b, time.monotonic() - began)))
    assert (result.stdout_bytes, result.stderr_bytes) == (b"out\nlate\n", b"err\n")
    first_out = next(s for s in seen if s[0] == "out")  # docker copies the two streams apart: no order between them
    assert first_out[1] == b"out\n" and first_out[2] < result.duration - 0.5
    assert ("err", b"err\n") in [s[:2] for s in seen]


def test_interrupt_still_removes_the_container(engine) -> None:
    def interrupt(_: bytes) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_in_sandbox(spec(), "echo go; sleep 100", engine=engine, on_stdout=interrupt)
    assert mine(engine) == []


def test_missing_image_says_how_to_build_it(engine) -> None:
    with pytest.raises(SandboxError) as caught:
        run_in_sandbox(spec(image="bridge-sandbox:nope"), ["true"], engine=engine)
    assert caught.value.exit_code == 125
    assert "build-sandbox-image.sh" in caught.value.hint
    assert mine(engine) == []


def test_unreachable_engine_says_how_to_start_it(tmp_path: Path) -> None:
    with pytest.raises(SandboxError) as caught:
        run_in_sandbox(spec(), ["true"], engine=Engine(f"unix://{tmp_path}/docker.sock"))
    assert caught.value.exit_code == 125
    assert "dockerd" in caught.value.hint


def test_end_report_is_cut_off_and_output_before_it_kept(engine) -> None:
    """The launcher's in-band end report never shows; unterminated output, a look-alike report and a
    missing program all come through as before; output of processes outliving the command is not waited for."""
    fake = "0123456789abcdef0123456789abcdef:0"  # the report's shape, but not this run's nonce
    result = run_in_sandbox(spec(), f"echo {fake}; printf out; printf err >&2; (sleep 30; echo late) & exit 7",
                            engine=engine)
    assert (result.exit_code, result.stdout_bytes, result.stderr_bytes) == (7, f"{fake}\nout".encode(), b"err"), result
    assert not result.timed_out and b"late" not in result.stdout_bytes  # the report, not the background sleep, ended the run
    missing = run_in_sandbox(spec(), ["no-such-program"], engine=engine)
    assert missing.exit_code == 127 and b"not found" in missing.stderr_bytes, missing


def test_end_report_split_anywhere_is_still_found() -> None:
    """_Ends on its own (a pure parser): the report may arrive cut into any pieces, after any output."""
    from bridge.exec.sandbox.run import _Ends, _Output

    marker = b"feedbeef:"
    stream = b"a" + marker[:4] + b"b\n" + b"tail" + marker + b"42\n" + b"after"
    for step in (1, 2, 5, len(stream)):
        ends = _Ends(marker, _Output(1 << 20))
        for i in range(0, len(stream), step):
            ends.take(1, stream[i:i + step])
        ends.take(2, marker + b"42\n")
        assert (ends.code(), ends.out.get(1)) == (42, b"a" + marker[:4] + b"b\ntail"), step
    unreported = _Ends(marker, _Output(1 << 20))
    unreported.take(1, b"x" + marker[:3])
    assert unreported.code() is None and unreported.out.get(1) == b"x"
    unreported.flush()
    assert unreported.out.get(1) == b"x" + marker[:3]


PTRACE_PID1 = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.ptrace(16, 1, 0, 0) == 0:  # PTRACE_ATTACH: PID 1 stops, and stays stopped once we exit
    sys.exit("attached to pid 1")
print(os.strerror(ctypes.get_errno()))
"""


def test_an_init_of_ours_is_pid_1_and_cannot_be_stopped_or_traced(engine) -> None:
    result = run_in_sandbox(spec(timeout=30.0), "cat /proc/1/comm; kill -STOP 1; echo still-running", engine=engine)
    assert (result.exit_code, result.stdout_bytes) == (0, b"python3\nstill-running\n"), result
    traced = run_in_sandbox(spec(timeout=30.0), ["python3", "-c", PTRACE_PID1], engine=engine)
    assert (traced.exit_code, traced.timed_out, traced.stdout_bytes) == (0, False, b"Operation not permitted\n"), traced


def test_signals_and_exit_codes_pass_through_the_init(engine) -> None:
    killed = run_in_sandbox(spec(), "kill -TERM $$", engine=engine)
    piped = run_in_sandbox(spec(), "yes | head -n 2; echo \"${PIPESTATUS:-done}\"", engine=engine)
    assert killed.exit_code == 143, killed
    assert (piped.exit_code, piped.stdout_bytes) == (0, b"y\ny\ndone\n"), piped  # SIGPIPE is default again in the command
