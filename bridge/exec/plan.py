"""One `plan(config, options)` for a `bridge exec` run: the CLI, the keeper and CodeExecutor all use it,
so a flag's range, the --python rules, the default timeout and --sandbox's one host are checked once."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from bridge import limits, targets
from bridge.config import Config, Remote
from bridge.errors import UsageError
from bridge.exec.options import ExecOptions
from bridge.exec.service import ExecRequest

PYTHON = ("python3", "-")  # the deployed venv's python3 comes first on PATH when there is one


class Plan(NamedTuple):
    """Where and what to run; `code` is the --python FILE's bytes (None: the run's stdin is the process's)."""

    remotes: list[Remote]
    request: ExecRequest
    code: bytes | None = None


def plan(config: Config, options: ExecOptions, *, cwd: Path | None = None,
         remotes: list[Remote] | None = None) -> Plan:
    """The plan for `options`, a --python FILE read relative to `cwd`; `remotes` given skips resolving the
    target. Raises UsageError (a flag out of range, no command, --sandbox on many hosts) or a target error."""
    limits.check_option("--timeout", "exec.timeout", options.timeout)
    limits.check_option("--forks", "exec.forks", options.forks)
    remotes = targets.resolve(config, options.target) if remotes is None else remotes
    request = exec_request(config, options)
    code = read_code(options.python, cwd) if options.python not in (None, "-") else None
    if options.sandbox and len(remotes) != 1:
        raise UsageError("--sandbox runs on one host", hint="name a single remote")
    return Plan(remotes, request, code)


def exec_request(config: Config, options: ExecOptions) -> ExecRequest:
    """The command (or python3 for --python), env, cwd and timeout (the flag, else bridge.yaml's)."""
    timeout = options.timeout if options.timeout is not None else (config.exec.timeout or None)
    if options.python:
        if options.command:
            raise UsageError("--python takes no command after `--`", hint="pass arguments inside the code")
        return ExecRequest(PYTHON, options.env, options.cwd, timeout)
    if not options.command:
        raise UsageError("no command given", hint="bridge exec prod -- uname -a")
    return ExecRequest(options.command, options.env, options.cwd, timeout)


def read_code(path: str, cwd: Path | None = None) -> bytes:
    """The --python file (relative to `cwd`, the client's); raises UsageError (exit 2) when it cannot be read."""
    try:
        return (Path(cwd or ".") / path).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from e
