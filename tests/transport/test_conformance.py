"""The transport contract (bridge/transport.py), run against every transport: local, ssh (a real sshd on
loopback) and hub:// (SSH over the hub's WebSocket to a real agent and sshd).

Every test talks to the interface only, so a new transport passes by implementing it. The ssh and hub
targets are this machine too, which lets a test check remote processes by PID and use real listeners.
"""
from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bridge.config import Remote
from bridge.errors import ConnectError, TimeoutExpired, UsageError
from bridge.runners import LocalRunner, SSHRunner
from bridge.transport import Pipe, PtySession, Transport
from tests.conftest import Home
from tests.hub.conftest import agent_factory, hub  # noqa: F401  (fixtures, for the hub:// transport)
from tests.sshd import SSHServer

KINDS = ["local", "ssh", "hub"]


def _ssh_runner(home: Home, server: SSHServer, path: str) -> SSHRunner:
    from bridge.ssh.connection import Connection
    from bridge.ssh.settings import from_endpoint
    from bridge.targets import parse_url

    settings = from_endpoint(parse_url(server.url(path), where="test"), identities=(home.key,))
    return SSHRunner(Remote(name="box", url=server.url(path)), path, Connection(settings))


def _hub_runner(request: pytest.FixtureRequest, home: Home, server: SSHServer, path: str) -> SSHRunner:
    """hub://: the agent dials a real hub and serves the real sshd; the client trusts its host key first."""
    from bridge.ssh.connection import Connection
    from bridge.ssh.settings import _through_hub
    from bridge.targets import parse_url
    from tests.hub.conftest import wait_for

    hub = request.getfixturevalue("hub")
    agent = request.getfixturevalue("agent_factory")("web1")
    agent.start(hub.url, hub.token("agent", "web1"), "--ssh", f"127.0.0.1:{server.port}")
    wait_for(agent.connected, 30)
    login = request.getfixturevalue("bridge")("hub", "login", hub.address, "--token",
                                              hub.token("user", "ann", "--role", "admin"))
    assert login.code == 0, login
    url = f"hub://{hub.address}/web1{path}"
    settings = _through_hub(parse_url(url, where="test"), (home.key,), "", 10.0)
    runner = SSHRunner(Remote(name="edge", url=url), path, Connection(settings))
    runner.trust_host_key()
    return runner


@pytest.fixture(params=KINDS)
def transport(request: pytest.FixtureRequest, home: Home, tmp_path: Path) -> Iterator[Transport]:
    path = str(tmp_path)
    if request.param == "local":
        runner: Transport = LocalRunner(Remote(name="here", url=f"local://{path}"), path)
    else:
        server = request.getfixturevalue("sshd")
        runner = _ssh_runner(home, server, path) if request.param == "ssh" else _hub_runner(request, home, server, path)
    with runner:
        yield runner


def _gone(pid: int) -> bool:
    """No such process, or a zombie (it has ended; only its reaping is left)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


# ---------------------------------------------------------------- runs

def test_stdout_and_stderr_arrive_apart_and_byte_exact(transport: Transport) -> None:
    blob = bytes(range(256)) * 2000
    script = "python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 2000)'; printf '\\000err\\377' >&2"
    seen: list[bytes] = []
    result = transport.run_stream(script, on_stdout=seen.append)
    assert result.exit_code == 0
    assert result.stdout_bytes == blob and b"".join(seen) == blob
    assert result.stderr_bytes == b"\x00err\xff"


def test_stdin_as_bytes_as_an_iterator_and_none_is_eof(transport: Transport) -> None:
    data = bytes(range(256)) * 4000  # 1 MB: more than any pipe or window holds at once
    assert transport.run_stream("cat", stdin=data, timeout=30).stdout_bytes == data
    pieces = transport.run_stream("cat; echo end", stdin=iter([b"a", b"", b"b\n"]), timeout=30)
    assert pieces.stdout_bytes == b"ab\nend\n"
    empty = transport.run_stream("cat; echo eof", timeout=30)  # no stdin: cat sees EOF at once, not the timeout
    assert (empty.exit_code, empty.stdout_bytes) == (0, b"eof\n")
    assert transport.run_capture("cat; echo eof", timeout=30) == (0, b"eof\n", b"")
    assert transport.run_capture("cat", stdin=b"\x00x", timeout=30)[1] == b"\x00x"


def test_a_command_that_ignores_its_stdin_is_not_an_error(transport: Transport) -> None:
    result = transport.run_stream("exit 3", stdin=iter([b"x" * 65536] * 64), timeout=30)
    assert result.exit_code == 3


def test_env_is_exported_with_any_value_and_a_bad_name_is_refused(transport: Transport) -> None:
    value = "it's $HOME `id` \"q\" \\ ;"
    result = transport.run_stream('printf %s "$GREETING"', env={"GREETING": value, "B_2": "x"})
    assert result.stdout_bytes == value.encode()
    with pytest.raises(UsageError):
        transport.run_stream("true", env={"BAD-NAME": "x"})


def test_cwd_is_entered_and_a_missing_one_stops_the_run(transport: Transport, tmp_path: Path) -> None:
    folder = tmp_path / "a dir; 'x'"
    folder.mkdir()
    assert transport.run_stream("pwd -P").stdout_bytes != f"{folder.resolve()}\n".encode()
    assert transport.run_stream("pwd -P", cwd=str(folder)).stdout_bytes == f"{folder.resolve()}\n".encode()
    missing = transport.run_stream("touch ran", cwd=str(tmp_path / "missing"))
    assert missing.exit_code == 2 and not (tmp_path / "missing").exists()


@pytest.mark.parametrize("script, code", [("true", 0), ("exit 7", 7), ("exit 255", 255), ("sleep 30 & kill -TERM $!; wait $!", 143),
                                          ("echo a # a comment last", 0)])
def test_exit_status_is_the_commands_own(transport: Transport, script: str, code: int) -> None:
    assert transport.run_stream(script).exit_code == code
    assert transport.run_capture(script)[0] == code


def test_a_last_command_killed_from_outside_reads_128_plus_n(transport: Transport, tmp_path: Path) -> None:
    """The script's shell stays the last command's parent (no exec of it over ssh), so it reports the death."""
    pidfile = tmp_path / "last.pid"
    code = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(30)"
    script = shlex.join(["python3", "-c", code, str(pidfile)])

    def kill() -> None:
        _wait(lambda: pidfile.exists() and pidfile.read_text())
        os.kill(int(pidfile.read_text()), signal.SIGTERM)

    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    assert transport.run_stream(script).exit_code == 143
    killer.join()


@pytest.mark.parametrize("script", ["kill -TERM $$", "exec sh -c 'kill -KILL $$'"])
def test_a_signal_that_kills_the_scripts_own_shell(transport: Transport, request: pytest.FixtureRequest,
                                                   script: str) -> None:
    """128+N here; over ssh sshd says so with `exit-signal`, which paramiko drops: no status, 255."""
    code = {"kill -TERM $$": 143, "exec sh -c 'kill -KILL $$'": 137}[script]
    expected = code if request.node.callspec.params["transport"] == "local" else 255
    assert transport.run_stream(script).exit_code == expected
    assert transport.run_capture(script)[0] == expected
    assert transport.run_stream(script, timeout=30).exit_code == code  # the timeout wrapper reports it


def test_the_command_reaches_the_target_byte_for_byte_when_asked(transport: Transport) -> None:
    """run_capture and verbatim run_stream send the text as is: what a forced command (bridge guard) matches."""
    script = "tr '\\000' '\\n' < /proc/$$/cmdline | tail -n 1 # git-receive-pack '/srv/app/repo.git'"
    for got in (transport.run_capture(script)[1], transport.run_stream(script, verbatim=True).stdout_bytes):
        assert got == script.encode() + b"\n"
    with pytest.raises(UsageError):
        transport.run_stream("true", verbatim=True, timeout=5)


def test_an_untimed_script_runs_in_the_login_shell(request: pytest.FixtureRequest, transport: Transport) -> None:
    """As `ssh HOST SCRIPT` runs it: where the login shell is bash, bash-only syntax works."""
    import pwd

    if request.node.callspec.params["transport"] == "local" or not pwd.getpwuid(0).pw_shell.endswith("bash"):
        pytest.skip("needs a server whose login shell is bash")
    script = "a=(x y z)\nsource /dev/null\n[[ ${a[1]} == y ]] && echo \"${#a[@]} ${BASH_VERSION%%.*}\"\n# the end"
    result = transport.run_stream(script)
    assert (result.exit_code, result.stdout_bytes[:2]) == (0, b"3 "), result


def test_timeout_ends_the_whole_tree_background_children_too(transport: Transport, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = f"sleep 300 & echo $! > {pidfile}; sleep 300; echo not-reached"
    result = transport.run_stream(script, timeout=1)
    assert result.exit_code == 124 and result.timed_out
    assert b"not-reached" not in result.stdout_bytes
    assert _gone(int(pidfile.read_text()))


def test_run_capture_raises_at_its_timeout(transport: Transport) -> None:
    with pytest.raises(TimeoutExpired):
        transport.run_capture("sleep 30", timeout=0.5)


def _start(transport: Transport, script: str, started: Path, **options: object) -> tuple[threading.Thread, list]:
    """`script` run_stream'ed from a thread, once it has touched `started`; the list gets its end."""
    ended: list[object] = []

    def run() -> None:
        try:
            ended.append(transport.run_stream(script, **options))  # type: ignore[arg-type]
        except ConnectError as e:
            ended.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    _wait(started.exists)
    return thread, ended


@pytest.mark.parametrize("timeout", [None, 600], ids=["plain", "under-timeout"])
@pytest.mark.parametrize("last", ["exec sleep 301", "while :; do sleep 0.05; done"], ids=["exec", "shell-loop"])
def test_cancel_from_another_thread_ends_the_runs_whole_tree(transport: Transport, tmp_path: Path,
                                                              timeout: float | None, last: str) -> None:
    started, background, top = tmp_path / "started", tmp_path / "bg.pid", tmp_path / "top.pid"
    script = f"sleep 300 & echo $! > {background}; echo $$ > {top}; touch {started}; {last}"
    thread, ended = _start(transport, script, started, timeout=timeout)
    pids = [int(background.read_text()), int(top.read_text())]
    transport.cancel()
    thread.join(60)
    assert ended, "run_stream did not end after cancel()"
    _wait(lambda: all(_gone(pid) for pid in pids), tries=100)  # none of the command is left on the server
    transport.cancel()  # nothing runs now: a no-op


@pytest.mark.parametrize("timeout", [None, 60], ids=["plain", "under-timeout"])
def test_signal_reaches_the_runs_tree_and_the_command_decides(transport: Transport, tmp_path: Path,
                                                              timeout: float | None) -> None:
    started, seen = tmp_path / "started", tmp_path / "seen"
    script = (f"trap 'echo usr1 >> {seen}' USR1; (trap 'echo child >> {seen}; exit 0' USR1; touch {started};"
              f" while :; do sleep 0.05; done) & wait; wait; echo after")
    thread, ended = _start(transport, script, started, timeout=timeout)
    transport.signal(signal.SIGUSR1)
    thread.join(30)
    assert ended and not isinstance(ended[0], ConnectError), ended
    assert sorted(seen.read_text().split()) == ["child", "usr1"]
    assert ended[0].stdout_bytes == b"after\n"  # type: ignore[attr-defined]
    transport.signal(signal.SIGUSR1)  # nothing runs now: a no-op


# ---------------------------------------------------------------- PTY

def _read_until(pty: PtySession, want: bytes, limit: int = 300) -> bytes:
    seen = b""
    for _ in range(limit):
        data = pty.read(0.1)
        if data == b"":
            break
        seen += data or b""
        if want in seen:
            return seen
    raise AssertionError(f"{want!r} never came; got {seen!r}")


def _read_to_end(pty: PtySession, limit: int = 300) -> bytes:
    seen = b""
    for _ in range(limit):
        data = pty.read(0.1)
        if data == b"":
            return seen
        seen += data or b""
    raise AssertionError(f"the PTY session did not end; got {seen!r}")


def test_pty_echoes_keys_and_reports_the_exit_status(transport: Transport) -> None:
    pty = transport.open_pty("cat; exit 4")
    try:
        pty.write(b"hello\n")
        assert _read_until(pty, b"hello\r\nhello\r\n").count(b"hello") == 2  # the terminal's echo, then cat's
        pty.write(b"\x04")  # Ctrl-D: EOF for cat
        _read_to_end(pty)
        assert pty.wait() == 4
    finally:
        pty.close()


def test_pty_size_is_set_and_followed_after_resize(transport: Transport) -> None:
    pty = transport.open_pty("stty size; read line; stty size", size=(91, 27))
    try:
        assert b"27 91" in _read_until(pty, b"27 91")
        pty.resize(120, 40)
        pty.write(b"go\n")
        assert b"40 120" in _read_to_end(pty)
        assert pty.wait() == 0
    finally:
        pty.close()


def test_ctrl_c_on_the_pty_is_sigint_to_the_command(transport: Transport) -> None:
    pty = transport.open_pty("trap 'echo got-INT; exit 5' INT; echo ready; while :; do sleep 0.1; done")
    try:
        _read_until(pty, b"ready")
        pty.write(b"\x03")
        assert b"got-INT" in _read_to_end(pty)
        assert pty.wait() == 5
    finally:
        pty.close()


def test_closing_a_pty_hangs_up_the_command(transport: Transport, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    pty = transport.open_pty(f"echo $$ > {pidfile}; echo ready; while :; do sleep 0.1; done")
    _read_until(pty, b"ready")
    pty.close()
    pty.close()
    _wait(lambda: _gone(int(pidfile.read_text())))


# ---------------------------------------------------------------- pipes

def _upper_server(family: int, address: object) -> tuple[socket.socket, threading.Thread]:
    """A real listener that answers each connection with what it read, upper-cased, after the client's EOF."""
    server = socket.socket(family)
    server.bind(address)
    server.listen(4)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
            conn.sendall(data.upper())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


def _exchange(pipe: Pipe, payload: bytes) -> bytes:
    """Send `payload` then EOF while reading the answer, as a splice does (the far end may answer as it reads)."""
    def send() -> None:
        pipe.sendall(payload)
        pipe.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    got = b""
    while chunk := pipe.recv(65536):
        got += chunk
    sender.join(30)
    pipe.close()
    return got


def test_pipe_to_a_tcp_port_on_the_target(transport: Transport) -> None:
    server, thread = _upper_server(socket.AF_INET, ("127.0.0.1", 0))
    with server:
        port = server.getsockname()[1]
        payload = b"ping \x00\xff" * 50000
        assert _exchange(transport.open_pipe(port=port), payload) == payload.upper()
        thread.join(30)
    with pytest.raises(ConnectError):
        transport.open_pipe(port=port)  # nothing listens there now


def test_pipe_to_a_unix_socket_on_the_target(transport: Transport, tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    server, thread = _upper_server(socket.AF_UNIX, path)
    with server:
        payload = b"hello \x00\xff" * 50000
        assert _exchange(transport.open_pipe(unix=path), payload) == payload.upper()
        thread.join(30)
    with pytest.raises(ConnectError):
        transport.open_pipe(unix=str(tmp_path / "nobody.sock"))


def test_a_pipe_splices_to_a_local_socket_as_is(transport: Transport) -> None:
    """What a forward does with a pipe (the sandbox's engine socket, say): bridge.ssh.splice joins them."""
    from bridge.ssh.splice import splice

    server, thread = _upper_server(socket.AF_INET, ("127.0.0.1", 0))
    with server:
        mine, theirs = socket.socketpair()
        joined = threading.Thread(target=splice, args=(theirs, transport.open_pipe(port=server.getsockname()[1])),
                                  daemon=True)
        joined.start()
        assert _exchange(mine, b"spliced \x00" * 10000) == b"SPLICED \x00" * 10000
        joined.join(30)
        assert not joined.is_alive()


def test_a_stdio_pipe_is_a_commands_stdin_and_stdout(transport: Transport) -> None:
    """open_stdio: bytes to the command's stdin, its stdout back; half-close is its EOF, its exit ours."""
    payload = b"stdio \x00\xff" * 50000
    assert _exchange(transport.open_stdio("echo err >&2; tr a-z A-Z"), payload) == payload.upper()


def test_a_stdio_pipe_ends_when_its_command_exits(transport: Transport) -> None:
    pipe = transport.open_stdio("echo done")  # never reads its stdin
    got = b""
    while chunk := pipe.recv(65536):
        got += chunk
    pipe.close()
    assert got == b"done\n"


def test_connect_names_the_carrier_pipes_ride_on(transport: Transport) -> None:
    assert transport.connect().carrier is transport.connect().carrier  # the same connection: the same carrier


# ---------------------------------------------------------------- git

def _git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_git_push_and_clone_through_the_transport(transport: Transport, tmp_path: Path) -> None:
    from bridge.sync.gitlink import GitLink

    bare, work, clone = tmp_path / "srv" / "repo.git", tmp_path / "work", tmp_path / "clone"
    _git(tmp_path, "init", "-q", "--bare", str(bare))
    _git(tmp_path, "init", "-q", "-b", "main", str(work))
    (work / "data.bin").write_bytes(os.urandom(200_000))
    _git(work, "add", ".")
    _git(work, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "one")
    with GitLink(transport, str(bare)) as link:  # the way every transport carries git: run_stream of the service
        _git(work, "push", "-q", link.url, "main", env=link.env())
        _git(tmp_path, "clone", "-q", "-b", "main", link.url, str(clone), env=link.env())
    assert (clone / "data.bin").read_bytes() == (work / "data.bin").read_bytes()
    assert _git(bare, "rev-parse", "main") == _git(work, "rev-parse", "HEAD")
    direct = transport.git_url(str(bare))
    if direct is not None:
        assert _git(tmp_path, "ls-remote", direct, "main").split()[0] == _git(work, "rev-parse", "HEAD")


# ---------------------------------------------------------------- connect

def test_connect_says_where_and_as_whom(transport: Transport) -> None:
    link = transport.connect()
    assert link.where == transport.describe() and link.user
    assert transport.run_capture("echo $(id -un)")[1].strip().decode() == link.user


def _wait(check: Callable[[], object], tries: int = 600) -> None:
    import time

    for _ in range(tries):
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("the condition never became true")
