"""The fast path of `bridge push`: its flags parsed by hand, so a push never loads typer and click (~100 ms).

The flags are push's command model (bridge.sync.options), the one the Typer command is generated
from; for anything the hand parser leaves to Typer (`--help`, an unknown or malformed option, a
second TARGET, `--`) it returns None before any output, and main() lets Typer parse and report it.
"""
from __future__ import annotations

from bridge.sync.options import PushOptions, parse


def try_push(args: list[str]) -> int | None:
    """Run `bridge push ARGS` without Typer and return its exit code; None leaves ARGS to Typer."""
    options = parse(args)
    if options is None:
        return None
    return run(options)


def run(options: PushOptions) -> int:
    """The push both the Typer command and the fast path make of `options`."""
    from bridge.commands.push import push

    return push(options.on or options.target, wip=options.wip, deploy=not options.no_deploy, force=options.force,
                redeploy=options.redeploy, verbose=options.verbose)
