"""The engine client's failures are one-line SandboxErrors (exit 125) with a next step, never a library's
exception: a missing or dead socket, a container killed from outside, a missing image, a reply cut short."""
from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.errors import SandboxError
from bridge.exec.sandbox import Engine, run_in_sandbox
from bridge.exec.sandbox.box import list_boxes, name_of
from bridge.exec.sandbox.engine import EngineError
from tests.exec.sandbox_env import engine, spec  # noqa: F401 - fixture


def one_line_error(caught: pytest.ExceptionInfo[SandboxError]) -> str:
    assert caught.value.exit_code == 125 and caught.value.hint, caught.value
    assert "\n" not in str(caught.value), caught.value
    return str(caught.value)


def test_no_socket_says_so_and_how_to_start_the_engine(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/docker.sock"
    with pytest.raises(SandboxError) as caught:
        Engine(url).ping()
    assert one_line_error(caught) == f"cannot ping on the docker engine at {url}: No such file or directory"
    assert "start-dockerd.sh" in (caught.value.hint or "")


def test_a_socket_nobody_listens_on_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "docker.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))  # bound, never listening: connect() is refused, as with a crashed dockerd
    try:
        with pytest.raises(SandboxError) as caught:
            run_in_sandbox(spec(pool=1), ["true"], engine=Engine(f"unix://{path}"))
    finally:
        dead.close()
    assert one_line_error(caught).endswith(": Connection refused")


@pytest.fixture
def bad_engine(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A stand-in engine socket answering every request with `request.param`, then hanging up: a dockerd
    that sends a body shorter than its length or a broken chunk cannot be made to do so on demand."""
    path = tmp_path / "bad.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            client.recv(65536)
            client.sendall(request.param)
            client.close()

    threading.Thread(target=serve, daemon=True).start()
    yield f"unix://{path}"
    server.close()


SHORT = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{\"Id\": \"ab"
BAD_CHUNK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n[]\r\n"
NO_REPLY = b""


@pytest.mark.parametrize(("bad_engine", "said"), [(SHORT, "its reply was cut short or garbled"),
                                                  (BAD_CHUNK, "its reply was cut short or garbled"),
                                                  (NO_REPLY, "it closed the connection without a reply")],
                         indirect=["bad_engine"], ids=["short-body", "bad-chunk", "no-reply"])
def test_a_reply_cut_short_or_garbled_is_one_line(bad_engine: str, said: str) -> None:
    with pytest.raises(SandboxError) as caught:
        run_in_sandbox(spec(pool=1), ["true"], engine=Engine(bad_engine))
    assert one_line_error(caught) == f"cannot list containers on the docker engine at {bad_engine}: {said}"


def test_a_container_killed_from_outside_ends_the_run_with_137_and_goes(engine) -> None:
    seen: list[str] = []

    def kill_it(data: bytes) -> None:  # the command is running: kill its container behind bridge's back
        seen.append(data.decode())
        ours = [name_of(e) for e in list_boxes(engine) if name_of(e).startswith("bridge-run-")]
        subprocess.run(["docker", "kill", *ours], check=True, capture_output=True)

    result = run_in_sandbox(spec(), "echo up; sleep 100", engine=engine, on_stdout=kill_it)
    assert (result.exit_code, seen, result.timed_out) == (137, ["up\n"], False), result
    assert [name_of(e) for e in list_boxes(engine) if name_of(e).startswith("bridge-run-")] == []


def test_a_container_that_is_gone_is_an_engine_error_not_a_traceback(engine) -> None:
    with pytest.raises(EngineError) as caught:
        engine.start("bridge-run-no-such-container")
    assert caught.value.status == 404
    assert one_line_error(caught).startswith("docker engine: No such container: bridge-run-no-such-container")
    with pytest.raises(EngineError) as attached:
        engine.attach("bridge-run-no-such-container")
    assert one_line_error(attached).startswith("docker engine: No such container: bridge-run-no-such-container")


def test_runs_on_one_client_leave_no_file_descriptor_behind(engine) -> None:
    """A keeper serves run after run on one client: each run's attach stream must be closed, all of it."""
    run_in_sandbox(spec(), ["true"], engine=engine)  # the client's kept-alive connection is open from here on
    before = len(list(Path("/proc/self/fd").iterdir()))
    results = [run_in_sandbox(spec(), "head -c 2000000 /dev/zero", engine=engine) for _ in range(3)]
    assert [(r.exit_code, len(r.stdout_bytes)) for r in results] == [(0, 2_000_000)] * 3
    assert len(list(Path("/proc/self/fd").iterdir())) == before
