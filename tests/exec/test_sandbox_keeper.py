"""`bridge exec --sandbox` served by the connection keeper: the real CLI against the real dockerd.

Which process ran a container is read from its name (`bridge-run-<token>.<pid>.<host>`): the
keeper's pid there proves the keeper served the run; a hostname that was an idle pool
container's id before the run proves the run took a pooled container.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.exec.sandbox import Engine
from bridge.exec.sandbox.box import list_boxes, name_of, remove
from bridge.exec.sandbox.pool import idle
from tests.conftest import BRIDGE, Home, Result, keeper_lock, keeper_socket, write_config
from tests.exec.exec_fixtures import keeper_pid
from tests.exec.sandbox_env import engine  # noqa: F401 - fixture


@dataclass
class Box:
    """A local:// workspace with a pooled sandbox, and the keeper that serves it."""

    workspace: Path
    home: Home
    run: Callable[..., Result]
    engine: Engine

    def exec(self, *args: str, **kw) -> Result:
        return self.run("exec", "--sandbox", *args, cwd=self.workspace, **kw)

    @property
    def runtime(self) -> Path:
        return Path(self.home.env["XDG_RUNTIME_DIR"]) / "bridge"

    def keeper(self) -> int | None:
        return keeper_pid(keeper_lock(self.runtime))

    def ready(self, count: int = 1) -> set[str]:
        """Wait for `count` idle pool containers of this workspace; their ids."""
        wait_until(lambda: len(self.idle()) >= count, 30)
        return self.idle()

    def idle(self) -> set[str]:
        """Idle pool containers of this workspace's spec (its snapshot, in this home's cache, is mounted in them)."""
        return {e["Id"] for e in idle(self.engine) if str(self.home.path) in _mounts(e)}

    def runs_of(self, pid: int) -> list[str]:
        """Run containers owned by `pid` (whatever their state)."""
        return [n for n in map(name_of, list_boxes(self.engine)) if n.startswith("bridge-run-") and f".{pid}." in n]


def commit_all(folder: Path) -> None:
    """Make `folder` a git repo with its files committed (the sandbox mounts a snapshot of them)."""
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "files"]):
        subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


def _mounts(entry: dict) -> str:
    return " ".join(m.get("Source", "") for m in entry.get("Mounts", []))


def wait_until(check: Callable[[], object], within: float) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())


@pytest.fixture
def box(engine: Engine, home: Home, bridge: Callable[..., Result], tmp_path: Path) -> Iterator[Box]:
    """The workspace (pool: 1, 256 MB); afterwards its keeper is stopped and nothing of it is left."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    tmp_path.chmod(0o755)
    workspace.chmod(0o755)
    write_config(workspace, f"workspace: w\nremotes:\n  here: {{url: \"local://{tmp_path}/deploy\"}}\n"
                            "exec:\n  sandbox: {pool: 1, memory: 256m}\n")
    commit_all(workspace)
    made = Box(workspace, home, bridge, engine)
    yield made
    pid = made.keeper()
    if pid:
        os.kill(pid, signal.SIGTERM)  # the keeper finishes its removals and refills, then exits
        assert wait_until(lambda: not Path(f"/proc/{pid}").exists(), 30)
        assert made.runs_of(pid) == []
    for ident in made.idle():
        remove(engine, ident)


def test_runs_are_served_by_the_keeper_from_the_pool(box: Box) -> None:
    first = box.exec("--", "sh", "-c", "echo secret > /tmp/state; hostname")
    assert first.code == 0, first
    pid = box.keeper()
    assert pid and keeper_socket(box.runtime).exists()
    ready = box.ready()
    second = box.exec("--", "sh", "-c", "cat /tmp/state 2>&1; hostname")
    assert second.code == 0, second
    assert box.keeper() == pid  # the same keeper, warm
    state, host = second.out.splitlines()
    assert "No such file" in state  # run 1's file is not there
    assert host in {i[:12] for i in ready}  # the container that was waiting in the pool
    assert host != first.out.strip()
    assert wait_until(lambda: not box.idle() & ready and box.idle(), 30)  # used once, destroyed, refilled


def test_container_belongs_to_the_keeper_and_goes_when_the_client_is_killed(box: Box) -> None:
    proc = subprocess.Popen([*BRIDGE, "exec", "--sandbox", "--", "sh", "-c", "echo started; sleep 60"],
                            cwd=box.workspace, env=box.home.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"started\n"
        pid = box.keeper()
        assert len(box.runs_of(pid)) == 1  # run by the keeper, not by the client process
        assert box.runs_of(proc.pid) == []
        proc.kill()
        proc.wait(10)
        assert wait_until(lambda: box.runs_of(pid) == [], 5), box.runs_of(pid)
    finally:
        proc.kill()
        proc.wait()
    assert box.exec("--", "echo", "next").out == "next\n"  # the keeper serves on


def test_another_environment_is_not_served_by_this_keeper(box: Box) -> None:
    """A shell with another BRIDGE_* setting gets a keeper of its own (keyed by its identity), never this one."""
    assert box.exec("--", "true").code == 0
    pid = box.keeper()
    env = {**box.home.env, "BRIDGE_PROFILE": "other"}  # a BRIDGE_* setting the keeper was not started with
    proc = subprocess.Popen([*BRIDGE, "exec", "--sandbox", "--", "sh", "-c", "echo started; sleep 60"],
                            cwd=box.workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"started\n"
        assert box.runs_of(pid) == []  # not this keeper's
        proc.send_signal(signal.SIGINT)  # Ctrl-C: its container goes
        assert proc.wait(30) == 130
    finally:
        proc.kill()
        proc.wait()
    assert box.runs_of(proc.pid) == []
    assert box.keeper() == pid


def test_timeout_kills_the_container_with_124(box: Box) -> None:
    began = time.monotonic()
    result = box.exec("--timeout", "1", "--", "sleep", "60")
    assert result.code == 124, result
    assert time.monotonic() - began < 15
    assert wait_until(lambda: box.runs_of(box.keeper()) == [], 5)


def test_json_and_statuses_match_the_in_process_path(box: Box) -> None:
    script = ["--json", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]
    warm, direct = box.exec(*script), box.exec("--no-reuse", *script)
    rows = [json.loads(r.out) for r in (warm, direct)]
    assert warm.code == direct.code == 3, (warm, direct)
    for row in rows:
        row.pop("duration")
    assert rows[0] == rows[1] == {"host": "here", "exit_code": 3, "status": "failed", "stdout": "out\n",
                                  "stderr": "err\n", "timed_out": False, "error": None}
    oom = box.exec("--json", "--", "python3", "-c", "b = b'x' * (1 << 30)")
    assert (oom.code, json.loads(oom.out)["status"]) == (137, "oom"), oom
    capped = box.exec("--json", "--timeout", "1", "--", "sleep", "60")
    assert (capped.code, json.loads(capped.out)["status"]) == (124, "timeout"), capped


def test_stdin_and_python_code_reach_the_container(box: Box) -> None:
    fed = box.exec("--", "cat", input=b"through the keeper\n")
    assert (fed.code, fed.out) == (0, "through the keeper\n"), fed
    code = box.exec("--python", "-", input=b"import os\nprint(os.getuid())\n")
    assert (code.code, code.out) == (0, "65534\n"), code
    assert box.keeper()


def test_no_reuse_runs_in_the_client(box: Box) -> None:
    result = box.exec("--no-reuse", "--", "echo", "alone")
    also = box.exec("--", "echo", "alone", env={"BRIDGE_NO_REUSE": "1"})
    assert (result.code, result.out, also.out) == (0, "alone\n", "alone\n"), (result, also)
    assert not keeper_socket(box.runtime).exists() and box.keeper() is None


def test_missing_image_is_one_line_and_125_through_the_keeper(box: Box) -> None:
    write_config(box.workspace, "workspace: w\nremotes:\n  here: {url: \"local:///tmp\"}\n"
                                "exec:\n  sandbox: {image: \"bridge-sandbox:nope\"}\n")
    result = box.exec("--", "true")
    assert result.code == 125, result
    error, hint = result.err.splitlines()
    assert error == "bridge: error: sandbox image bridge-sandbox:nope not found on the docker engine"
    assert hint == "  hint: run scripts/build-sandbox-image.sh (or set exec.sandbox.image in bridge.yaml)"
    assert box.keeper()  # it was the keeper that answered


def test_server_sandbox_runs_on_one_kept_connection(engine: Engine, sshd_factory, bridge, tmp_path: Path) -> None:
    server, refusing = sshd_factory(), sshd_factory(extra_config=["SetEnv PATH=/nonexistent"])  # no docker CLI
    write_config(tmp_path, f"workspace: w\nremotes:\n  prod: {{url: \"{server.url('/tmp')}\"}}\n"
                           f"  shut: {{url: \"{refusing.url('/tmp')}\"}}\n")
    for word in ("one", "two"):
        result = bridge("exec", "--sandbox", "prod", "--", "echo", word, cwd=tmp_path)
        assert (result.code, result.out) == (0, f"{word}\n"), result
    assert server.accepted_connections() == 1  # the keeper's connection and its engine forward, reused
    for way in ("--no-reuse", "--sandbox"):  # in the client, then through the keeper
        refused = bridge("exec", "--sandbox", way, "shut", "--", "true", cwd=tmp_path)
        assert refused.code == 125, refused
        error, hint = refused.err.splitlines()
        assert error.startswith("bridge: error: cannot list containers on the docker engine at unix://"), error
        assert error.endswith("docker: command not found") and "docker is installed and running on shut" in hint, refused
