"""A sandboxed run on an ssh target: the server's engine reached through bridge's own SSH connection."""
from __future__ import annotations

from pathlib import Path

from bridge import config as bridge_config
from bridge.exec.sandbox import Engine, forward_docker_socket, run_in_sandbox
from bridge.ssh import connect
from tests.conftest import write_config
from tests.exec.sandbox_env import engine, spec  # noqa: F401 - fixture


def test_sandbox_on_an_ssh_target(engine, home, sshd, workspace: Path) -> None:
    write_config(workspace, f"workspace: w\nremotes:\n  prod: {{url: \"{sshd.url('/tmp')}\"}}\n")
    cfg = bridge_config.load(workspace)
    with connect(cfg, cfg.remotes["prod"]) as conn, forward_docker_socket(conn.transport) as forward:
        assert oct(Path(forward.path).parent.stat().st_mode & 0o777) == "0o700"
        remote = Engine(forward.base_url)
        result = run_in_sandbox(spec(), "id -u; cat; echo err >&2", stdin=b"over ssh\n", engine=remote, host="prod")
        timed = run_in_sandbox(spec(), ["sleep", "100"], timeout=1, engine=remote, host="prod")
    assert (result.exit_code, result.stdout_bytes, result.stderr_bytes) == (0, b"65534\nover ssh\n", b"err\n"), result
    assert (result.host, timed.status) == ("prod", "timeout")
    assert not Path(forward.path).exists()
