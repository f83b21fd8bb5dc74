"""A real sshd whose guard runs as a non-root login account and hands its records to the audit writer.

The account's authorized_keys line is the one `bridge keys add` writes, pointing at bridge in a
venv that account can run, with the writer's socket (`--audit`) and the policy (`--policy`) on
the guard's command line; the guard keeps recordings beside the socket, in a folder the test
gives the account.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.accounts import Account
from tests.conftest import Home, Result
from tests.security.writer import AuditWriter
from tests.sshd import SSHServer


@dataclass
class Guarded:
    """The server, the account whose key is guarded, and the writer that keeps its trail."""

    server: SSHServer
    account: Account
    writer: AuditWriter
    home: Home
    policy: Path

    def ssh_argv(self, *extra: str) -> list[str]:
        return ["ssh", "-F", "/dev/null", "-i", str(self.home.key), "-p", str(self.server.port),
                "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={self.home.ssh / 'known_hosts'}",
                "-o", "StrictHostKeyChecking=yes", *extra, f"{self.account.name}@{self.server.host}"]

    def ssh(self, command: str, input: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*self.ssh_argv(), command], capture_output=True, env=self.home.env, timeout=60,
                              input=input, stdin=None if input is not None else subprocess.DEVNULL)

    def grant(self, sec: Callable[..., Result], role: str, bridge: Path) -> None:
        """Write the account's authorized_keys line for `role`, as `bridge keys add` makes it."""
        staging = self.writer.folder / "authorized_keys" / self.account.name  # keys add reads the login from %u
        staging.parent.mkdir(exist_ok=True)
        result = sec("keys", "add", self.account.name, "--role", role, "--key", f"@{self.home.key}.pub",
                     "--file", str(staging), "--bridge", str(bridge), "--policy", str(self.policy),
                     "--audit", str(self.writer.socket))
        assert result.code == 0, result
        self.account.authorize(staging.read_text())
        staging.unlink()


def guarded_server(sshd_factory: Callable[..., SSHServer], home: Home, account: Account, writer: AuditWriter,
                   policy_text: str = "users: {}\n") -> Guarded:
    """Start the sshd; the policy file and the recordings folder live beside the writer's socket."""
    policy = writer.folder / "policy.yaml"
    policy.write_text(policy_text)
    policy.chmod(0o644)
    recordings = writer.socket.parent / "recordings"
    recordings.mkdir(mode=0o700)
    os.chown(recordings, account.uid, account.gid)
    server = sshd_factory(extra_config=account.sshd_config())
    return Guarded(server, account, writer, home, policy)
