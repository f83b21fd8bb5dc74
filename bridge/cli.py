"""Entry point: `main()` parses, runs one command, and is the only place that turns errors into exit codes.

Typer and Rich are imported only after the fast paths had their chance, so a warm
`bridge exec` never pays for them.
"""
from __future__ import annotations

import gc
import os
import sys
import time
TYPE_CHECKING = False  # not typing's: importing typing took a warm exec from 18.5 to 34 ms CPU (1.98x to
# 3.67x ControlMaster, interleaved runs). mypy reads the name as True (tests/test_types.py); a keeper test
# keeps typing off the warm path.
if TYPE_CHECKING:
    from typing import Any, Callable, NoReturn

    import typer

from bridge.errors import BridgeError, ExitCode, internal_error

# Which module registers which top-level command: a run builds only the module it needs, since
# Typer turns every registered function into a click command up front (~4 ms each).
COMMANDS = {
    "core": ("init", "remote", "test"),
    "sync": ("push", "pull", "status", "rollback", "deploy"),
    "exec": ("exec", "shell"),
    "tunnel": ("tunnel",),
    "security": ("keys", "guard", "audit", "replay"),
    "apps": ("ps", "logs", "restart", "stop", "start", "config"),
    "hub": ("hub",),
    "agent": ("agent",),
}
COMMAND_MODULES = tuple(COMMANDS)


def main(argv: list[str] | None = None) -> NoReturn:
    """Run bridge with `argv` and exit with its code; `--traceback` or BRIDGE_DEBUG=1 shows stacks."""
    _sanitise_stdio()
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _pop_flag(args, "--traceback") or os.environ.get("BRIDGE_DEBUG") == "1"
    started = time.monotonic()
    audited = False  # True when the connection keeper already wrote the audit line
    try:
        code, audited = _run(args)
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
    except Exception as e:  # the last resort: a bug, or a library error not yet translated at its boundary
        if debug:
            raise
        code, line = internal_error(e)
        sys.stderr.write(line)
    if not audited:
        _audit(args, code, time.monotonic() - started)
    _exit(code)


def _run(args: list[str]) -> tuple[int, bool]:
    """Parse with Typer (standalone mode off, so errors reach main); (exit code, audited by the keeper)."""
    if args == ["--version"]:  # answered before Typer loads: a version check costs an interpreter start
        print_version()
        return 0, False
    if args[:1] == ["exec"]:  # warm path: the connection keeper runs it, no typer/rich/paramiko/yaml
        from bridge.exec.fast import try_warm

        warm = try_warm(args[1:])
        if warm is not None:
            return warm
    if args[:1] == ["push"]:  # the everyday push flags parsed by hand: no typer/click
        from bridge.commands.push_fast import try_push

        code = try_push(args[1:])
        if code is not None:
            return code, False
    import typer
    from click import ClickException

    app = build_app(_modules_for(args))
    try:
        result = app(args=args, prog_name="bridge", standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code, False
    except typer.Abort:
        raise KeyboardInterrupt from None
    except ClickException as e:
        e.show()
        return int(ExitCode.USAGE), False
    return (result if isinstance(result, int) else 0), False


def build_app(modules: tuple[str, ...] = COMMAND_MODULES) -> typer.Typer:
    """The Typer app with the commands of `modules` registered (all of them by default)."""
    import importlib

    import typer

    app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                      rich_markup_mode=None,  # plain click help: Rich's help formatter costs ~80 ms
                      context_settings={"help_option_names": ["-h", "--help"]})
    app.callback()(_app_options())  # a group even when one command is registered
    for name in modules:
        importlib.import_module(f"bridge.commands.{name}").register(app)
    return app


def _app_options() -> "Callable[..., None]":
    """The app's own options (`--version`), made here because Typer declares them as default values."""
    import typer

    def show_version(value: bool) -> None:
        if value:  # `bridge --version` alone never gets here: _run answers it before Typer loads
            print_version()
            raise typer.Exit(0)

    def options(version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True,
                                             help="Print the version and exit.")) -> None:
        """Push, run and reach work on your servers safely."""

    return options


def print_version() -> None:
    """`bridge X.Y.Z`, the version pyproject.toml reads from bridge.__version__ (one constant)."""
    from bridge import __version__

    sys.stdout.write(f"bridge {__version__}\n")


def _modules_for(args: list[str]) -> tuple[str, ...]:
    """The one command module `args` needs, or all of them (bridge --help, a typo to suggest for)."""
    first = args[0] if args else ""
    for module, commands in COMMANDS.items():
        if first in commands:
            return (module,)
    return COMMAND_MODULES


def _audit(args: list[str], code: int, duration: float) -> None:
    """One client audit line per operation, allowed or refused (bridge.security.client decides which)."""
    from bridge.exec.options import env_given
    from bridge.security import client

    if client.is_audited(args):
        client.record_operation(args, code, duration, os.getcwd(), env_given(args))


def _sanitise_stdio() -> None:
    """/dev/null on a closed fd 0, 1 or 2 (`bridge … >&-`), as OpenSSH's sanitise_stdfd() does: else the
    first socket we open takes that number, and a command's output is written into the SSH connection."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _exit(code: int) -> NoReturn:
    """Flush our output, then exit through the normal teardown, so every library's atexit work runs.

    (Not os._exit: skipping teardown saved 1-3 ms of CPU, 2-6 % of a warm or cold exec, measured
    interleaved against ssh; under the 10 % a process-wide shortcut must buy.) gc.freeze: teardown
    does not collect paramiko's objects one by one.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: the fd was closed when we started (`bridge … >&-`)
                stream.flush()
        except (OSError, ValueError):
            _discard(stream)  # a closed pipe (`bridge … | head`): nothing more can reach it
    gc.freeze()
    sys.exit(code)


def _discard(stream: Any) -> None:
    """Point `stream`'s fd at /dev/null, so teardown's own flush of what is left cannot fail again
    (the Python docs' recipe for a closed pipe: docs.python.org/3/library/signal.html#note-on-sigpipe)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)
    except (OSError, ValueError):
        pass


def _pop_flag(args: list[str], flag: str) -> bool:
    """Remove `flag` from the options part of `args` (never from after `--`)."""
    if flag in (args[:args.index("--")] if "--" in args else args):
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
