"""`exec --sandbox` and `CodeExecutor(sandbox=True)`: the same request, run by bridge.exec.sandbox.

On a server the engine is the server's own dockerd, reached through its socket forwarded over
the one SSH connection (host key checked as always); `local://` uses this machine's engine.
The workspace mounted is the deployed `current` (a server) or the workspace folder (local).
"""
from __future__ import annotations

import shlex

from bridge.config import Config, Remote, SandboxConfig
from bridge.exec.service import ExecRequest
from bridge.result import ExecResult
from bridge.runners import Runner, Sink, open_runner


def run_sandboxed(config: Config, remote: Remote, request: ExecRequest, stdin: bytes | None,
                  on_stdout: Sink | None = None, on_stderr: Sink | None = None) -> ExecResult:
    """Run `request` in a fresh locked-down container on `remote`. Raises SandboxError (125)."""
    from bridge.exec.sandbox import Engine, forward_docker_socket, run_in_sandbox, spec_from_config

    with open_runner(config, remote) as runner:
        workspace = _workspace(config, runner)
        spec = spec_from_config(config.exec.sandbox or SandboxConfig(), workspace, request.timeout or 0.0)
        command = request.command if isinstance(request.command, str) else list(request.command)
        run = dict(stdin=stdin, env=dict(request.env), timeout=request.timeout, on_stdout=on_stdout,
                   on_stderr=on_stderr, host=remote.name)
        if runner.is_local:
            return run_in_sandbox(spec, command, engine=Engine(), **run)
        with forward_docker_socket(runner.connection.transport) as forward:
            return run_in_sandbox(spec, command, engine=Engine(forward.base_url), **run)


def _workspace(config: Config, runner: Runner) -> str | None:
    """What to mount: the workspace here, the deployed `current` there (None when there is none)."""
    if runner.is_local:
        return str(config.root) if config.root else None
    current = f"{runner.path.rstrip('/')}/current"
    if not runner.path or runner.run_capture(f"test -d {shlex.quote(current)}")[0] != 0:
        return None
    return current
