"""Run a command on a target, the same way for `local://`, `ssh://` and `hub://` (bridge.transport's contract).

`open_runner(config, remote)` gives a LocalRunner or an SSHRunner; both take a command
string that the caller built with shlex.quote / shlex.join, never from raw input.
`run_capture` is for short control commands; `run_stream` owns a whole user run (stream,
stdin, env, cwd, timeout of the whole process tree, Ctrl-C) and returns one ExecResult;
`open_pty`, `open_pipe` and `git_url` are the rest of the contract.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.config import Config, Remote
from bridge.runners.base import Runner, exports, feed_stdin
from bridge.runners.local import LocalRunner
from bridge.runners.ssh import SSHRunner
from bridge.server.scripts import timeout_argv
from bridge.targets import parse_url
from bridge.transport import TIMED_OUT, Sink, Stdin

if TYPE_CHECKING:
    from bridge.ssh.pool import ConnectionPool

__all__ = ["TIMED_OUT", "LocalRunner", "Runner", "SSHRunner", "Sink", "Stdin", "exports", "feed_stdin",
           "open_runner", "timeout_argv"]


def open_runner(config: Config, remote: Remote, *, pool: "ConnectionPool | None" = None) -> Runner:
    """A runner for `remote`; SSH connects lazily so building one never blocks.

    With a `pool`, the connection comes from (and stays in) it: closing the runner keeps it open.
    """
    endpoint = parse_url(remote.url, where=f"remotes.{remote.name}.url")
    if endpoint.is_local:
        return LocalRunner(remote, endpoint.path)
    from bridge.ssh.connection import Connection
    from bridge.ssh.settings import for_remote

    settings, hint = for_remote(config, remote), f"bridge test --trust {remote.name}"
    if pool is not None:
        return SSHRunner(remote, endpoint.path, pool.get(settings, trust_hint=hint), owned=False)
    return SSHRunner(remote, endpoint.path, Connection(settings, trust_hint=hint))
