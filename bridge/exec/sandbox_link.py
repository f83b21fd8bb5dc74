"""`exec --sandbox` and `CodeExecutor(sandbox=True)`: the same request, run by bridge.exec.sandbox.

On a server the engine is the server's own dockerd, reached through `docker system dial-stdio` on
the transport's stdio pipes (bridge.transport `open_stdio`: over SSH exec channels on the one
connection, host key checked as always; sandbox/forward.py); `local://` uses this machine's engine.
The workspace mounted is the deployed release `current` points to, or (a local target with nothing
deployed) a snapshot of the workspace's tracked files (sandbox/snapshot.py): never the checkout
itself, its `.git` or its ignored files.
The CLI and the connection keeper run it with the same code (`run_and_report`); the keeper
passes its `KeptEngines`, so engine clients (the docker SDK, imported once), connections and
forwards outlive a run and the used container is removed once the result is out.
"""
from __future__ import annotations

import os
import shlex
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING

from bridge.config import Config, Remote, SandboxConfig
from bridge.errors import BridgeError
from bridge.exec.output import json_line
from bridge.exec.service import ExecRequest
from bridge.result import ExecResult
from bridge.runners import Runner, Sink, open_runner
from bridge.targets import parse_url

if TYPE_CHECKING:
    from bridge.exec.sandbox import Cancel, Engine
    from bridge.exec.sandbox.forward import Dial, DockerForward
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
    with open_runner(config, remote, pool=kept.pool if kept else None) as runner:
        return run_on(runner, config, request, stdin, on_stdout, on_stderr, kept=kept, cancel=cancel)


def run_on(runner: Runner, config: Config, request: ExecRequest, stdin: bytes | None,
           on_stdout: Sink | None = None, on_stderr: Sink | None = None, *,
           kept: KeptEngines | None = None, cancel: Cancel | None = None) -> ExecResult:
    """run_sandboxed on a transport the caller opened (the hub's, to an agent's server), with `config`'s
    `exec.sandbox` limits. Raises SandboxError (125)."""
    from bridge.exec.sandbox import run_in_sandbox, spec_from_config

    workspace, shared = _workspace(config, runner)
    spec = spec_from_config(config.exec.sandbox or SandboxConfig(), workspace, request.timeout or 0.0)
    if shared:  # one snapshot serves every run of its tree: never writable
        spec = replace(spec, writable=False)
    command = request.command if isinstance(request.command, str) else list(request.command)
    run = partial(run_in_sandbox, spec, command, stdin=stdin, env=dict(request.env), timeout=request.timeout,
                  on_stdout=on_stdout, on_stderr=on_stderr, host=runner.name, cancel=cancel)
    if kept:
        return run(engine=kept.engine(runner), later=kept.later)
    with _one_shot_engine(runner) as engine:
        return run(engine=engine)


class KeptEngines:
    """The keeper's side of sandbox runs: pooled SSH connections, one engine client per engine kept
    across runs (with each server's forward: the removal and refill after a run still need it),
    after-work on threads."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self._engines: dict[str | None, _Client] = {}
        self._lock = threading.Lock()
        self._jobs: set[threading.Thread] = set()

    def engine(self, runner: Runner) -> Engine:
        """This machine's engine, or the server's through a forward on the runner's (pooled) connection;
        made on first use (that imports the SDK) and again only for a reopened pool connection."""
        key, owner, dial = (None, None, None) if _here(runner) else (runner.name, runner.connect().carrier,
                                                                      _engine_dial(runner))
        with self._lock:
            kept = self._engines.get(key)
            if kept is None or kept.owner is not owner:
                if kept:
                    kept.close()
                kept = self._engines[key] = _Client.open(dial, runner.name, owner)
        return kept.engine

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
        """Let pending removals and refills finish (bounded), then close every engine client and forward."""
        with self._lock:
            jobs = list(self._jobs)
        for thread in jobs:
            thread.join(wait)
        with self._lock:
            for kept in self._engines.values():
                kept.close()
            self._engines.clear()


def _here(runner: Runner) -> bool:
    """Whether the runner's target is this machine (its engine is ours): the remote's URL says."""
    return parse_url(runner.remote.url, where=f"remotes.{runner.name}.url").is_local


def _engine_dial(runner: Runner) -> Dial:
    """How to reach a server's engine: a stdio pipe running `docker system dial-stdio` there. What it
    depends on (a new one needs a new forward) is the Link's `carrier`."""
    from bridge.exec.sandbox.forward import DIAL_STDIO

    return partial(runner.open_stdio, DIAL_STDIO)


@contextmanager
def _one_shot_engine(runner: Runner) -> Iterator[Engine]:
    """The engine for one run in the CLI's own process, closed (with its forward) afterwards."""
    client = _Client.open(None if _here(runner) else _engine_dial(runner), runner.name)
    try:
        yield client.engine
    finally:
        client.close()


@dataclass(frozen=True)
class _Client:
    """An engine client, the forward under it (a server's) and what that forward's connection is."""

    engine: Engine
    forward: DockerForward | None
    owner: object = None

    @classmethod
    def open(cls, dial: Dial | None, name: str, owner: object = None) -> _Client:
        """This machine's engine (no `dial`), or a server's through a new forward; when that one is
        unreachable, the hint names what must hold on the server and the error says what it said."""
        from bridge.exec.sandbox import Engine, forward_docker_socket

        if dial is None:
            return cls(Engine(), None, owner)
        forward = forward_docker_socket(dial)
        try:
            return cls(forward.engine(f"check that docker is installed and running on {name}, for this "
                                      f"login user (bridge test {name})"), forward, owner)
        except BaseException:
            forward.close()
            raise

    def close(self) -> None:
        self.engine.close()
        if self.forward:
            self.forward.close()


def _workspace(config: Config, runner: Runner) -> tuple[str | None, bool]:
    """What to mount, and whether it is a shared snapshot: the deployed release, resolved (so a pool
    never serves the one before a deploy), else here a snapshot of the workspace's tracked files."""
    current = f"{runner.path.rstrip('/')}/current"
    if _here(runner):
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
