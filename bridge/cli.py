"""Entry point: `main()` parses, runs one command, and is the only place that turns errors into exit codes.

Typer and Rich are imported only after the fast paths had their chance, so a warm
`bridge exec` never pays for them.
"""
from __future__ import annotations

import os
import sys
import time
from typing import NoReturn

from bridge.errors import BridgeError, ExitCode

COMMAND_MODULES = ("core", "sync", "exec", "tunnel", "security")
# Commands that change or run something are audited on the client; reads and the server-side guard
# (which audits itself) are not.
AUDITED = {"init", "remote", "push", "pull", "rollback", "exec", "shell", "tunnel", "keys"}
READ_ONLY_SUBCOMMANDS = {"list", "status", "show"}


def main(argv: list[str] | None = None) -> NoReturn:
    """Run bridge with `argv` and exit with its code; `--traceback` or BRIDGE_DEBUG=1 shows stacks."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _pop_flag(args, "--traceback") or os.environ.get("BRIDGE_DEBUG") == "1"
    started = time.monotonic()
    try:
        code = _run(args)
    except BridgeError as e:
        if debug:
            raise
        _print_error(e)
        code = int(e.exit_code)
    except KeyboardInterrupt:
        if debug:
            raise
        sys.stderr.write("\nbridge: interrupted\n")
        code = int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        code = int(ExitCode.FAILED)
        _silence_stdout()
    _audit(args, code, time.monotonic() - started)
    sys.exit(code)


def _run(args: list[str]) -> int:
    """Parse with Typer (standalone mode off, so errors reach main) and return the command's exit code."""
    if args[:1] == ["exec"]:  # warm path: the connection keeper runs it, no typer/rich/paramiko/yaml
        from bridge.exec.fast import try_warm

        code = try_warm(args[1:])
        if code is not None:
            return code
    import typer
    from typer._click.exceptions import ClickException  # typer >= 0.20 vendors click

    app = build_app()
    try:
        result = app(args=args, prog_name="bridge", standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        raise KeyboardInterrupt from None
    except ClickException as e:
        e.show()
        return int(ExitCode.USAGE)
    return result if isinstance(result, int) else 0


def build_app() -> "typer.Typer":  # noqa: F821 - typer is imported lazily
    """The Typer app with every feature's commands registered."""
    import importlib

    import typer

    app = typer.Typer(help="Push, run and reach work on your servers safely.", no_args_is_help=True,
                      pretty_exceptions_enable=False, add_completion=False,
                      rich_markup_mode=None,  # plain click help: Rich's help formatter costs ~80 ms
                      context_settings={"help_option_names": ["-h", "--help"]})
    for name in COMMAND_MODULES:
        importlib.import_module(f"bridge.commands.{name}").register(app)
    return app


def _audit(args: list[str], code: int, duration: float) -> None:
    """One client audit line per operation, allowed or refused, with secrets masked."""
    if not _audited(args):
        return
    import shlex

    from bridge.security import audit, secrets

    env = dict(a.split("=", 1) for a in _env_flags(args) if "=" in a)
    decision = "refused" if code == ExitCode.POLICY else "allowed"
    audit.record(action=args[0], command=shlex.join(args), exit_code=code, duration=round(duration, 4),
                 decision=decision, secrets=tuple(secrets.secret_values(env)), cwd=os.getcwd())


def _audited(args: list[str]) -> bool:
    options = _options(args)
    if not options or options[0] not in AUDITED or {"--help", "-h"} & set(options):
        return False
    return not (len(options) > 1 and options[1] in READ_ONLY_SUBCOMMANDS)


def _options(args: list[str]) -> list[str]:
    """The arguments bridge itself parses: those before `--`."""
    return args[:args.index("--")] if "--" in args else args


def _env_flags(args: list[str]) -> list[str]:
    """The K=V values given with --env/-e."""
    options = _options(args)
    values = [options[i + 1] for i in range(len(options) - 1) if options[i] in ("--env", "-e")]
    return values + [a.split("=", 1)[1] for a in options if a.startswith("--env=")]


def _pop_flag(args: list[str], flag: str) -> bool:
    """Remove `flag` from the options part of `args` (never from after `--`)."""
    if flag in _options(args):
        args.remove(flag)
        return True
    return False


def _print_error(error: BridgeError) -> None:
    sys.stderr.write(f"bridge: error: {error.message}\n")
    if error.hint:
        sys.stderr.write(f"  hint: {error.hint}\n")


def _silence_stdout() -> None:
    """After a closed pipe (`bridge … | head`), stop Python complaining at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
