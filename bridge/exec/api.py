"""The Python API: `CodeExecutor(workspace=..., target=..., sandbox=...)` with `run_bash` and `run_python`.

Same runs as `bridge exec` (same script, runner, timeout and ExecResult), with output captured
instead of printed; one executor keeps its SSH connection open between calls.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bridge import config as cfg
from bridge import targets
from bridge.config import Config, Remote
from bridge.errors import UsageError
from bridge.exec.options import ExecOptions
from bridge.exec.plan import plan
from bridge.exec.service import ExecRequest, run_one
from bridge.result import ExecResult
from bridge.ssh.pool import ConnectionPool

class CodeExecutor:
    """Run shell commands and Python code on one target (default: the workspace's default, else here).

    Example::

        with CodeExecutor(target="prod") as ex:
            print(ex.run_python("import sys; print(sys.version)").stdout)
    """

    def __init__(self, workspace: str | Path | None = None, target: str | None = None,
                 sandbox: bool = False) -> None:
        self.config = cfg.load(Path(workspace) if workspace else None)
        self.remote = _pick(self.config, target)
        self.sandbox = sandbox
        self._pool = ConnectionPool()

    def __enter__(self) -> "CodeExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the SSH connection, if one was opened."""
        self._pool.close()

    def run_bash(self, cmd: str, timeout: float | None = None, env: Mapping[str, str] | None = None,
                 stdin: bytes | None = None) -> ExecResult:
        """Run a shell command line. Raises ConnectError when the target cannot be reached."""
        return self._run(ExecOptions(command=cmd, env=dict(env or {}), timeout=timeout), stdin)

    def run_python(self, code: str, timeout: float | None = None, env: Mapping[str, str] | None = None) -> ExecResult:
        """Run Python source with the target's python3 (the deployed venv's, when there is one)."""
        return self._run(ExecOptions(python="-", env=dict(env or {}), timeout=timeout), code.encode())

    def _run(self, options: ExecOptions, stdin: bytes | None) -> ExecResult:
        """Planned as `bridge exec` plans it: the same range checks and bridge.yaml's default timeout."""
        request = plan(self.config, options.replace(sandbox=self.sandbox), remotes=[self.remote]).request
        if self.sandbox:
            return self._run_sandboxed(request, stdin)
        return run_one(self.config, self.remote, request, stdin=stdin, pool=self._pool)

    def _run_sandboxed(self, request: ExecRequest, stdin: bytes | None) -> ExecResult:
        from bridge.exec.sandbox_link import run_sandboxed

        return run_sandboxed(self.config, self.remote, request, stdin)


def _pick(config: Config, target: str | None) -> Remote:
    """One remote: the one named, the workspace default, or this machine when nothing is configured."""
    if target is None and not config.remotes:
        return Remote(name="local", url="local:///")
    remotes = targets.resolve(config, target)
    if len(remotes) != 1:
        raise UsageError(f"target `{target}` names {len(remotes)} hosts; CodeExecutor runs on one")
    return remotes[0]
