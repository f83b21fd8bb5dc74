"""Many clients at once against busy sshds (small MaxStartups): every run gets through, no traceback."""
from __future__ import annotations

import subprocess

import pytest

from tests.conftest import BRIDGE, write_config

CLIENTS = 12
BUSY = ["MaxStartups 3:100:3"]  # beyond 3 unauthenticated connections sshd drops every new one


def _fleet(sshd_factory, workspace, count: int) -> None:
    servers = [sshd_factory(extra_config=BUSY) for _ in range(count)]
    remotes = "".join(f"  h{i}: {{url: \"{s.url('/tmp')}\"}}\n" for i, s in enumerate(servers))
    write_config(workspace, f"workspace: w\nremotes:\n{remotes}")


@pytest.mark.parametrize("way", [[], ["--no-reuse"]], ids=["keeper", "direct"])
def test_concurrent_clients_on_busy_servers_all_succeed(sshd_factory, workspace, home, way) -> None:
    _fleet(sshd_factory, workspace, 4)
    argv = [*BRIDGE, "exec", *way, "--on", "all", "--", "echo", "ok"]
    procs = [subprocess.Popen(argv, cwd=workspace, env=home.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(CLIENTS)]
    results = [(p.wait(timeout=180), p.stdout.read().decode(), p.stderr.read().decode()) for p in procs]
    for code, out, err in results:
        assert "Traceback" not in err, err
        assert code == 0, (code, out, err)
        assert out.count("ok\n") == 4, out
