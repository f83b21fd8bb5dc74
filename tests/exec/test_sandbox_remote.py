"""A sandboxed run on an ssh target: the server's engine reached with `docker system dial-stdio` over
bridge's own SSH connection (real sshd, real dockerd): the public paramiko API it relies on is exercised."""
from __future__ import annotations

import stat
import time
from functools import partial
from pathlib import Path

import pytest

from bridge import config as bridge_config
from bridge.errors import SandboxError
from bridge.exec.sandbox import Engine, forward_docker_socket, run_in_sandbox
from bridge.exec.sandbox.forward import DIAL_STDIO
from bridge.exec.sandbox_link import KeptEngines
from bridge.paths import runtime_dir
from bridge.runners import open_runner
from bridge.ssh import connect
from bridge.ssh.pool import ConnectionPool
from tests.conftest import write_config
from tests.exec.sandbox_env import engine, spec  # noqa: F401 - fixture


def test_sandbox_on_an_ssh_target(engine, home, sshd, workspace: Path) -> None:
    write_config(workspace, f"workspace: w\nremotes:\n  prod: {{url: \"{sshd.url('/tmp')}\"}}\n")
    cfg = bridge_config.load(workspace)
    with connect(cfg, cfg.remotes["prod"]) as conn, forward_docker_socket(partial(conn.exec_channel, DIAL_STDIO)) as fw:
        socket_mode, dir_mode = (stat.S_IMODE(Path(p).stat().st_mode) for p in (fw.path, Path(fw.path).parent))
        assert (socket_mode, dir_mode, Path(fw.path).parent.parent) == (0o600, 0o700, runtime_dir())
        remote = Engine(fw.base_url)
        result = run_in_sandbox(spec(), "id -u; cat; echo err >&2", stdin=b"over ssh\n", engine=remote, host="prod")
        timed = run_in_sandbox(spec(), ["sleep", "100"], timeout=1, engine=remote, host="prod")
        remote.close()
    assert (result.exit_code, result.stdout_bytes, result.stderr_bytes) == (0, b"65534\nover ssh\n", b"err\n"), result
    assert (result.host, timed.status) == ("prod", "timeout")
    assert not Path(fw.path).exists()


def test_what_the_server_said_is_the_error(home, sshd, workspace: Path) -> None:
    """A server whose docker CLI is missing: the channel's stderr line becomes the one-line error."""
    write_config(workspace, f"workspace: w\nremotes:\n  prod: {{url: \"{sshd.url('/tmp')}\"}}\n")
    cfg = bridge_config.load(workspace)
    missing = "exec no-such-docker-cli system dial-stdio"
    with connect(cfg, cfg.remotes["prod"]) as conn, forward_docker_socket(partial(conn.exec_channel, missing)) as fw:
        remote = fw.engine("install docker on prod")
        with pytest.raises(SandboxError) as caught:
            run_in_sandbox(spec(), ["true"], engine=remote, host="prod")
        remote.close()
    message = str(caught.value)
    assert message.startswith(f"cannot list containers on the docker engine at {fw.base_url}: "), message
    assert "no-such-docker-cli" in message and "not found" in message and "\n" not in message, message
    assert (caught.value.exit_code, caught.value.hint) == (125, "install docker on prod")


def test_the_keeper_keeps_one_engine_client_per_engine(engine, home, sshd, workspace: Path) -> None:
    """The SDK's import and connections are paid once per keeper: runs reuse the client (and a server's
    forward) until the pooled connection under it is replaced, then a new forward serves the new one."""
    write_config(workspace, f"workspace: w\nremotes:\n  prod: {{url: \"{sshd.url('/tmp')}\"}}\n"
                            f"  here: {{url: \"local://{workspace}/target\"}}\n")
    cfg = bridge_config.load(workspace)
    with ConnectionPool() as pool:
        kept = KeptEngines(pool)
        here, prod = (open_runner(cfg, cfg.remotes[name], pool=pool) for name in ("here", "prod"))
        first = kept.engine(prod)
        assert (kept.engine(here), kept.engine(prod)) == (kept.engine(here), first)
        assert first.base_url != kept.engine(here).base_url
        result = run_in_sandbox(spec(), ["echo", "kept"], engine=first, host="prod")
        pool.close_idle(-1)  # the keeper dropped the idle connection: the next run gets a new one
        again = kept.engine(open_runner(cfg, cfg.remotes["prod"], pool=pool))
        assert again is not first and not Path(first.base_url[len("unix://"):]).exists()
        again.ping()
        kept.close()
    assert (result.exit_code, result.stdout_bytes) == (0, b"kept\n")
    assert not Path(again.base_url[len("unix://"):]).exists()  # close() removed the forwards


def wait_for(check, within: float = 30.0) -> None:
    end = time.monotonic() + within
    while not check():
        assert time.monotonic() < end, "never happened"
        time.sleep(0.02)


def test_a_spare_channel_is_dialled_ahead_and_a_dead_one_skipped(engine, home, sshd, workspace: Path) -> None:
    write_config(workspace, f"workspace: w\nremotes:\n  prod: {{url: \"{sshd.url('/tmp')}\"}}\n")
    cfg = bridge_config.load(workspace)
    channels = []
    commands = iter(["true"])  # the first channel dialled (the spare) exits at once, as when the engine went away

    def dial():
        channels.append(conn.exec_channel(next(commands, DIAL_STDIO)))
        return channels[-1]

    with connect(cfg, cfg.remotes["prod"]) as conn, forward_docker_socket(dial) as fw:
        wait_for(lambda: channels and channels[0].exit_status_ready())  # dialled before anyone connected
        remote = fw.engine("check docker on prod")
        remote.ping()  # not handed the dead spare: a new channel, and the next spare dialled beside it
        remote.ping()  # the kept-alive connection: no channel more
        wait_for(lambda: len(channels) == 3)
        remote.close()
    assert len(channels) == 3
