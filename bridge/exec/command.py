"""`bridge exec` and `bridge shell` once parsed: pick one host or a fleet, run, render, return the exit code."""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator

from bridge import config as cfg
from bridge.config import Config, Remote
from bridge.exec import output
from bridge.exec.fast import has_input
from bridge.exec.options import ExecOptions
from bridge.exec.plan import plan
from bridge.exec.service import ExecRequest, fleet_exit_code, run_fleet, run_one
from bridge.runners import Stdin
from bridge.ssh.pool import ConnectionPool

def execute(options: ExecOptions) -> int:
    """Run `options` on its targets and return bridge's exit code. Raises BridgeError (single host)."""
    config = cfg.load()
    remotes, request, code = plan(config, options)
    stdin: Stdin = code if code is not None else (sys.stdin.buffer.read() if options.python else stdin_source())
    if options.sandbox:
        return _sandboxed(config, remotes, request, stdin, options.json)
    if options.tty or options.sudo:
        from bridge.exec import interactive

        return interactive.run(config, remotes, request, options)
    if len(remotes) == 1 and not options.json:
        return _single(config, remotes[0], request, stdin)
    data = stdin if isinstance(stdin, bytes) else (b"".join(stdin) if stdin is not None else None)
    return _fleet(config, remotes, request, data, options)


def stdin_source(fd: int = 0) -> Iterator[bytes] | None:
    """This process's stdin as chunks; None (send EOF now) when it is a terminal, /dev/null or closed."""
    if not has_input(fd):
        return None

    def chunks() -> Iterator[bytes]:
        while data := os.read(fd, 65536):
            yield data

    return chunks()


def _single(config: Config, remote: Remote, request: ExecRequest, stdin: Stdin) -> int:
    """One host: raw output straight through; connection failures raise (exit 255)."""
    result = run_one(config, remote, request, stdin=stdin, on_stdout=output.stdout_sink,
                     on_stderr=output.stderr_sink, capture=False)
    if result.timed_out:
        sys.stderr.write(f"bridge: {remote.name}: timed out after {request.timeout:g}s\n")
    return result.exit_code


def _sandboxed(config: Config, remotes: list[Remote], request: ExecRequest, stdin: Stdin, as_json: bool) -> int:
    """--sandbox: one host, output streamed (or one JSON line); the container's code (125 engine error, 137 OOM)."""
    from bridge.exec.sandbox_link import run_and_report

    data = stdin if isinstance(stdin, bytes) or stdin is None else b"".join(stdin)
    return run_and_report(config, remotes[0], request, data, as_json, output.stdout_sink, output.stderr_sink)


def _fleet(config: Config, remotes: list[Remote], request: ExecRequest, stdin: bytes | None,
           options: ExecOptions) -> int:
    """Many hosts: prefixed lines as they come (or JSON lines at the end), then the summary."""
    printer = output.Prefixed([r.name for r in remotes])
    live = not options.json
    with ConnectionPool() as pool:
        results = run_fleet(config, remotes, request, forks=options.forks or config.exec.forks, stdin=stdin,
                            on_output=printer.output if live else None,
                            on_done=(lambda r: printer.done(r.host)) if live else None, pool=pool)
    rows = [r.to_dict() for r in results]
    for row in rows if options.json else ():
        output.json_line(row)
    if live:
        output.summary(rows)
    return fleet_exit_code(results)
