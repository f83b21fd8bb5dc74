"""`bridge exec`'s command model: every flag declared once, and the ExecOptions record they fill.

The Typer command (bridge.commands.exec), the Typer-free fast path (bridge.exec.fast), the keeper's
requests (bridge.exec.requests) and the client audit line all read this one declaration.
Import-free beyond bridge.options: the warm path loads it.
"""
from __future__ import annotations

from bridge.options import Command, Flag, Record, env_pair

TYPE_CHECKING = False  # not typing's: importing typing took a warm exec from 18.5 to 34 ms CPU (1.98x to
# 3.67x ControlMaster, interleaved runs). mypy reads the name as True (tests/test_types.py); a keeper test
# keeps typing off the warm path.
if TYPE_CHECKING:
    from typing import Callable

# exec's --forks, which `bridge test` shares (same name, help and limits.RANGES["exec.forks"])
FORKS = Flag("forks", ("--forks",), int, "Hosts at a time (default 32).")
EXEC = Command("exec", ("target", "Remote, group, a,b list or `all` (default: the default remote)."), (
    Flag("on", ("--on",), str, "Same as TARGET."),
    Flag("timeout", ("--timeout",), float, "Seconds; ends the whole remote process tree, exit 124."),
    Flag("env", ("--env", "-e"), env_pair, "K=V for the command (repeatable)."),
    Flag("cwd", ("--cwd",), str, "Directory on the server (default: deployed current, else home)."),
    Flag("tty", ("--tty", "-t"), bool, "Allocate a PTY (window size and Ctrl-C forwarded).", fast=False),
    Flag("sudo", ("--sudo",), bool, "Run through sudo; the password is asked once (or BRIDGE_SUDO_PASSWORD).",
         fast=False),
    Flag("python", ("--python",), str, "Run this Python file (`-`: stdin) on the target."),
    FORKS,
    Flag("json", ("--json",), bool, "One JSON object per host per line."),
    Flag("no_reuse", ("--no-reuse",), bool, "Do not use or start the connection keeper."),
    Flag("sandbox", ("--sandbox",), bool, "Run inside a locked-down Docker container on the target."),
), dashes=True)


class ExecOptions(Record):
    """Everything `bridge exec` was asked to do: the flags' fields, the command after `--`, a recorder."""

    FIELDS = {**{k: v for k, v in EXEC.defaults().items() if k != "on"}, "command": (), "record": None}
    __slots__ = tuple(FIELDS)
    command: tuple[str, ...] | str  # a str: one shell line (CodeExecutor.run_bash)
    target: str | None
    env: dict[str, str]  # never mutated
    cwd: str | None
    timeout: float | None
    tty: bool
    sudo: bool
    python: str | None
    forks: int | None
    json: bool
    no_reuse: bool
    sandbox: bool
    record: Callable[[bytes], None] | None  # a session recorder for --tty (the CLI makes one)


def options_from(fields: dict, command: tuple[str, ...]) -> ExecOptions:
    """The record for parsed `fields`: with --on, a TARGET word is the command's first word (as Typer reads it)."""
    fields = dict(fields)
    on, target = fields.pop("on"), fields["target"]
    if on and target:
        command, fields["target"] = (target, *command), on
    elif on:
        fields["target"] = on
    return ExecOptions(**fields, command=tuple(command))


def parse(args: list[str]) -> ExecOptions | None:
    """`bridge exec ARGS` as the Typer command reads them, or None for what only Typer parses or refuses."""
    parsed = EXEC.parse(args)
    if parsed is None:
        return None
    fields, extra = parsed
    if extra:
        return None  # a second TARGET: Typer's "unexpected extra argument"
    command = args[args.index("--") + 1:] if "--" in args else []
    return options_from(fields, tuple(command))


def env_given(argv: list[str]) -> dict[str, str]:
    """The --env pairs of a `bridge …` command line (those of `exec`; malformed ones skipped), so the
    audit line can mask their values whatever path ran the command."""
    if argv[:1] != ["exec"]:
        return {}
    pairs = (text.partition("=") for text in EXEC.values(argv[1:], "env"))
    return {name: value for name, sep, value in pairs if sep}
