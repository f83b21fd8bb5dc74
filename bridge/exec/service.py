"""`bridge exec` on one target or many: build the server's script, run it through a Runner, report results.

Fan-out runs hosts on threads (on 2 cores threads in one process beat a process per host);
a host that cannot be reached becomes an `unreachable` result, never an exception that hides
the others, and the connect timeout bounds how long it can hold things up.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

from bridge import fleet
from bridge.config import Config, Remote
from bridge.errors import BridgeError
from bridge.fleet import fan_out, host_failure
from bridge.exec import remote as remote_script
from bridge.result import ExecResult
from bridge.runners import Runner, Sink, Stdin, open_runner
from bridge.ssh.pool import ConnectionPool

OutputSink = Callable[[str, int, bytes], None]  # (host, 1 or 2, data)
DoneSink = Callable[[ExecResult], None]


class ExecRequest(NamedTuple):
    """What to run: argv (or one shell line), its environment, directory and time limit."""

    command: tuple[str, ...] | str
    env: Mapping[str, str] = {}  # never mutated
    cwd: str | None = None
    timeout: float | None = None


def script_for(runner: Runner, request: ExecRequest) -> str:
    """The sh text for `request` on this runner's target (deployed `current` and venv applied)."""
    return remote_script.script(request.command, deploy_path=runner.path, cwd=request.cwd, env=request.env,
                                host=runner.name)


def run_one(config: Config, remote: Remote, request: ExecRequest, *, stdin: Stdin = None,
            on_stdout: Sink | None = None, on_stderr: Sink | None = None,
            pool: ConnectionPool | None = None, capture: bool = True) -> ExecResult:
    """Run on one target, streaming to the sinks. Raises ConnectError (255) when it cannot be reached."""
    with open_runner(config, remote, pool=pool) as runner:
        return runner.run_stream(script_for(runner, request), stdin=stdin, on_stdout=on_stdout,
                                 on_stderr=on_stderr, timeout=request.timeout, capture=capture)


def run_fleet(config: Config, remotes: list[Remote], request: ExecRequest, *, forks: int | None = None,
              stdin: bytes | None = None, on_output: OutputSink | None = None, on_done: DoneSink | None = None,
              pool: ConnectionPool | None = None, capture: bool = True) -> list[ExecResult]:
    """Run on every remote, `forks` (default `exec.forks`) at a time; one result per remote, in order."""

    def one(remote: Remote) -> ExecResult:
        result = _guarded(config, remote, request, stdin, on_output, pool, capture)
        if on_done:
            on_done(result)
        return result

    return fan_out(config, remotes, one, forks=forks)


def _guarded(config: Config, remote: Remote, request: ExecRequest, stdin: bytes | None,
             on_output: OutputSink | None, pool: ConnectionPool | None, capture: bool) -> ExecResult:
    """run_one, with a host's BridgeError (cannot connect, …) turned into this host's result."""
    sinks = _host_sinks(remote.name, on_output)
    try:
        return run_one(config, remote, request, stdin=stdin, pool=pool, capture=capture, **sinks)
    except BridgeError as e:
        return ExecResult.failure(host_failure(remote.name, e))


def _host_sinks(host: str, on_output: OutputSink | None) -> dict[str, Sink | None]:
    if on_output is None:
        return {"on_stdout": None, "on_stderr": None}
    return {"on_stdout": lambda data: on_output(host, 1, data), "on_stderr": lambda data: on_output(host, 2, data)}


def fleet_exit_code(results: list[ExecResult]) -> int:
    """0 all ok, 1 a command failed somewhere, 255 a host was unreachable (DESIGN §4)."""
    return fleet.fleet_exit_code(r.exit_code for r in results)
