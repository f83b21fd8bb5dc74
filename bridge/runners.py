"""Run a command on a target, the same way for `local://` and `ssh://`.

`open_runner(config, remote)` gives a LocalRunner or an SSHRunner; both take a command
string that the caller built with shlex.quote / shlex.join, never from raw input.
"""
from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING, Any

from bridge.config import Config, Remote
from bridge.errors import TimeoutExpired
from bridge.targets import parse_url

if TYPE_CHECKING:
    from bridge.ssh.connection import Connection


class Runner:
    """Where commands run: `name` for display, `path` the remote's folder, `run_capture` for short commands."""

    def __init__(self, remote: Remote, path: str) -> None:
        self.remote = remote
        self.name = remote.name
        self.path = path

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection, if any."""

    def run_capture(self, command: str, *, stdin: bytes | None = None,
                    timeout: float | None = None) -> tuple[int, bytes, bytes]:
        """Run `command` with sh and return (exit code, stdout, stderr). Raises TimeoutExpired."""
        raise NotImplementedError


class LocalRunner(Runner):
    """This machine, through the same code paths as a server, without SSH."""

    is_local = True

    def run_capture(self, command: str, *, stdin: bytes | None = None,
                    timeout: float | None = None) -> tuple[int, bytes, bytes]:
        try:
            proc = subprocess.run(["/bin/sh", "-c", command], input=stdin or b"", capture_output=True,
                                  timeout=timeout, start_new_session=True)
        except subprocess.TimeoutExpired as e:
            raise TimeoutExpired(f"local command did not finish within {timeout:g}s") from e
        return proc.returncode, proc.stdout, proc.stderr


class SSHRunner(Runner):
    """A server over the one SSH layer; the connection opens on first use."""

    is_local = False

    def __init__(self, remote: Remote, path: str, connection: "Connection") -> None:
        super().__init__(remote, path)
        self.connection = connection

    def close(self) -> None:
        self.connection.close()

    def run_capture(self, command: str, *, stdin: bytes | None = None,
                    timeout: float | None = None) -> tuple[int, bytes, bytes]:
        return self.connection.run(command, stdin=stdin, timeout=timeout)


def open_runner(config: Config, remote: Remote) -> Runner:
    """A runner for `remote`; SSH connects lazily so building one never blocks."""
    endpoint = parse_url(remote.url, where=f"remotes.{remote.name}.url")
    if endpoint.is_local:
        return LocalRunner(remote, endpoint.path)
    from bridge.ssh.connection import Connection
    from bridge.ssh.settings import for_remote

    connection = Connection(for_remote(config, remote), trust_hint=f"bridge test --trust {remote.name}")
    return SSHRunner(remote, endpoint.path, connection)
