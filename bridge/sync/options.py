"""`bridge push`'s command model: its flags declared once, for the Typer command (bridge.commands.sync)
and the Typer-free fast path (bridge.commands.push_fast). Import-free beyond bridge.options."""
from __future__ import annotations

from bridge.options import Command, Flag, Record

TARGET_HELP = "Remote, group, a,b list or `all` (default: the `default:` remote)."

PUSH = Command("push", ("target", TARGET_HELP), (
    Flag("on", ("--on",), str, "Same as TARGET: a remote, group, list or all."),
    Flag("wip", ("--wip",), bool, "Ship uncommitted and untracked files as a snapshot."),
    Flag("no_deploy", ("--no-deploy",), bool, "Push only; the server does not deploy."),
    Flag("force", ("--force",), bool, "Overwrite the server's branch (says what it drops)."),
    Flag("redeploy", ("--redeploy",), bool, "Deploy even if the server runs this commit."),
    Flag("verbose", ("-v", "--verbose"), bool, "Every host's every line, on a terminal too."),
))


class PushOptions(Record):
    """Everything `bridge push` was asked to do, as both parsers read it."""

    FIELDS = PUSH.defaults()
    __slots__ = tuple(FIELDS)
    target: str | None
    on: str | None
    wip: bool
    no_deploy: bool
    force: bool
    redeploy: bool
    verbose: bool


def parse(args: list[str]) -> PushOptions | None:
    """`bridge push ARGS` as the Typer command reads them; None for what only Typer parses or refuses
    (--help, an unknown or malformed option, a second TARGET, `--`)."""
    parsed = PUSH.parse(args)
    if parsed is None or parsed[1]:
        return None
    return PushOptions(**parsed[0])
