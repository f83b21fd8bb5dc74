"""`exec --sandbox` and `CodeExecutor(sandbox=True)`: the same request, run by bridge.exec.sandbox.

On a server the engine is the server's own dockerd, reached through its socket forwarded over
the one SSH connection (host key checked as always); `local://` uses this machine's engine.
The workspace mounted is the deployed release `current` points to, or (a local target with
nothing deployed) a snapshot of the workspace's tracked files (sandbox/snapshot.py): never the
checkout itself, its `.git` or its ignored files.
The CLI and the connection keeper run it with the same code (`run_and_report`); the keeper
passes its `KeptEngines`, so connections and forwards outlive a run and the used container
is removed once the result is out.
"""
from __future__ import annotations

import os
import shlex
import threading
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from bridge.config import Config, Remote, SandboxConfig
from bridge.errors import BridgeError
from bridge.exec.output import json_line
from bridge.exec.service import ExecRequest
from bridge.result import ExecResult
from bridge.runners import Runner, Sink, open_runner

if TYPE_CHECKING:
    from bridge.exec.sandbox import Cancel, Engine
    from bridge.exec.sandbox.forward import DockerForward
    from bridge.ssh.pool import ConnectionPool


def run_and_report(config: Config, remote: Remote, request: ExecRequest, stdin: bytes | None, as_json: bool,
                   on_stdout: Sink, on_stderr: Sink, *, kept: KeptEngines | None = None,
                   cancel: Cancel | None = None) -> int:
    """--sandbox for the CLI and the keeper alike: output live, or one JSON line at the end; the exit code.

    The keeper passes its `kept` engines and a `cancel` for a client that hangs up. Raises SandboxError (125).
    """
    live = (None, None) if as_json else (on_stdout, on_stderr)
    result = run_sandboxed(config, remote, request, stdin, *live, kept=kept, cancel=cancel)
    if as_json:
        json_line(result.to_dict(), on_stdout)
    return result.exit_code


def run_sandboxed(config: Config, remote: Remote, request: ExecRequest, stdin: bytes | None,
                  on_stdout: Sink | None = None, on_stderr: Sink | None = None, *,
                  kept: KeptEngines | None = None, cancel: Cancel | None = None) -> ExecResult:
    """Run `request` in a fresh locked-down container on `remote`. Raises SandboxError (125)."""
    from bridge.exec.sandbox import Engine, forward_docker_socket, run_in_sandbox, spec_from_config

    with open_runner(config, remote, pool=kept.pool if kept else None) as runner:
        workspace, shared = _workspace(config, runner)
        spec = spec_from_config(config.exec.sandbox or SandboxConfig(), workspace, request.timeout or 0.0)
        if shared:  # one snapshot serves every run of its tree: never writable
            spec = replace(spec, writable=False)
        command = request.command if isinstance(request.command, str) else list(request.command)
        run = partial(run_in_sandbox, spec, command, stdin=stdin, env=dict(request.env), timeout=request.timeout,
                      on_stdout=on_stdout, on_stderr=on_stderr, host=remote.name, cancel=cancel)
        if kept:
            return run(engine=kept.engine(runner), later=kept.later)
        if runner.is_local:
            return run(engine=Engine())
        with forward_docker_socket(runner.connection.transport) as forward:  # type: ignore[attr-defined]  # not is_local: an SSHRunner (#14 replaces these checks)
            return run(engine=_server_engine(forward, runner.name))


class KeptEngines:
    """The keeper's side of sandbox runs: pooled SSH connections, each server's engine forward kept
    open across runs (the removal and refill after a run still need it), after-work on threads."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self._forwards: dict[str, DockerForward] = {}
        self._lock = threading.Lock()
        self._jobs: set[threading.Thread] = set()

    def engine(self, runner: Runner) -> Engine:
        """This machine's engine, or the server's through a forward on the runner's (pooled) connection."""
        from bridge.exec.sandbox import Engine, forward_docker_socket

        if runner.is_local:
            return Engine()
        transport = runner.connection.transport  # type: ignore[attr-defined]  # not is_local: an SSHRunner (#14 replaces these checks)
        with self._lock:
            forward = self._forwards.get(runner.name)
            if forward is None or forward.transport is not transport:  # first run, or a reopened connection
                if forward:
                    forward.close()
                forward = self._forwards[runner.name] = forward_docker_socket(transport)
        return _server_engine(forward, runner.name)

    def later(self, job: Callable[[], None]) -> None:
        """Run `job` (remove the used container, refill) on a thread, after the result went out."""

        def run() -> None:
            try:
                job()
            except BridgeError:
                pass  # the engine went away: the next run's cleanup removes what is left
            finally:
                with self._lock:
                    self._jobs.discard(threading.current_thread())

        thread = threading.Thread(target=run, daemon=True, name="sandbox-after")
        with self._lock:
            self._jobs.add(thread)
        thread.start()

    def close(self, wait: float = 30.0) -> None:
        """Let pending removals and refills finish (bounded), then stop every forward."""
        with self._lock:
            jobs = list(self._jobs)
        for thread in jobs:
            thread.join(wait)
        with self._lock:
            for forward in self._forwards.values():
                forward.close()
            self._forwards.clear()


def _server_engine(forward: DockerForward, name: str) -> Engine:
    """The server's engine through `forward`; when unreachable, the hint names both ends that can refuse."""
    from bridge.exec.sandbox import Engine

    return Engine(forward.base_url, hint=f"check that docker runs on {name} and that its sshd allows "
                                         f"StreamLocalForwarding (bridge test {name})")


def _workspace(config: Config, runner: Runner) -> tuple[str | None, bool]:
    """What to mount, and whether it is a shared snapshot: the deployed release, resolved (so a pool
    never serves the one before a deploy), else here a snapshot of the workspace's tracked files."""
    current = f"{runner.path.rstrip('/')}/current"
    if runner.is_local:
        if runner.path and os.path.isdir(current):
            return os.path.realpath(current), False
        from bridge.exec.sandbox.snapshot import tracked_snapshot

        snapshot = tracked_snapshot(config.root) if config.root else None
        return (str(snapshot), True) if snapshot else (None, False)
    if not runner.path:
        return None, False
    code, out, _ = runner.run_capture(f"cd {shlex.quote(current)} 2>/dev/null && pwd -P")
    lines = out.decode(errors="surrogateescape").splitlines()
    return (lines[-1], False) if code == 0 and lines else (None, False)
