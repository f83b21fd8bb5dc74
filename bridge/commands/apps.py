"""`bridge ps / logs / restart / stop / start` and `bridge config set/unset/list`: parse, call
bridge.apps.service, render."""
from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from bridge import ui

TARGET_HELP = "Remote, group, a,b list or `all` (default: the `default:` remote)."
ON_HELP = "Same as TARGET: a remote, group, list or all."
MASK = "********"


def register(app: typer.Typer) -> None:
    """Add the app commands to the app."""
    app.command(epilog="Example: bridge ps --on web --json")(ps)
    app.command(epilog="Example: bridge logs prod web -f -n 50")(logs)
    for action in ("restart", "stop", "start"):
        app.command(action, help=f"systemctl {action} the app's processes (all, or the one named).",
                    epilog=f"Example: bridge {action} prod worker")(_control(action))
    config_app = typer.Typer(help="The app's environment, kept on the server (.bridge/config.env, 0600).",
                             no_args_is_help=True)
    config_app.command("set", epilog="Example: bridge config set prod DATABASE_URL=postgres://db/app")(config_set)
    config_app.command("unset", epilog="Example: bridge config unset prod DEBUG")(config_unset)
    config_app.command("list", epilog="Example: bridge config list prod --show")(config_list)
    app.add_typer(config_app, name="config")


def ps(
    target: Annotated[Optional[str], typer.Argument(help=TARGET_HELP)] = None,
    on: Annotated[Optional[str], typer.Option("--on", help=ON_HELP)] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> int:
    """The app's processes on each target: state, pid, release, since, restarts."""
    from bridge import config as cfg
    from bridge.apps import service

    answers = service.ps(cfg.load(required=True), on or target)
    if json:
        ui.print_json([a.to_dict() for a in answers])
    else:
        rows = [[a.host, p.process, p.state, p.pid or "", p.release or "", p.since or "", p.restarts]
                for a in answers if a.ok for p in a.processes()]
        ui.table(None, ["host", "process", "state", "pid", "release", "since", "restarts"], rows)
        _say_errors(answers)
    return service.exit_code(answers)


def logs(
    target: Annotated[Optional[str], typer.Argument(help=TARGET_HELP)] = None,
    process: Annotated[Optional[str], typer.Argument(help="One process (default: all of them).")] = None,
    on: Annotated[Optional[str], typer.Option("--on", help=ON_HELP)] = None,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new lines.")] = False,
    lines: Annotated[int, typer.Option("-n", "--lines", help="How many lines back.")] = 100,
) -> int:
    """What the app's processes printed, from the server's journal (journalctl)."""
    from bridge import config as cfg
    from bridge.apps import service

    config = cfg.load(required=True)
    spec = on or target
    prefixed = len(service.server_remotes(config, spec)) > 1
    codes = service.logs(config, spec, process, lines, follow, _LogPrinter(prefixed).write)
    return max(codes, default=0)


class _LogPrinter:
    """Write journal output as it comes; across hosts, each whole line prefixed with its host."""

    def __init__(self, prefixed: bool) -> None:
        self.prefixed = prefixed
        self.partial: dict[str, bytes] = {}

    def write(self, host: str, chunk: bytes) -> None:
        if not self.prefixed:
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return
        *whole, self.partial[host] = (self.partial.get(host, b"") + chunk).split(b"\n")
        for line in whole:
            sys.stdout.buffer.write(host.encode() + b" | " + line + b"\n")
        sys.stdout.buffer.flush()


def _control(action: str):  # noqa: ANN202 - returns a Typer command function
    def command(
        target: Annotated[Optional[str], typer.Argument(help=TARGET_HELP)] = None,
        process: Annotated[Optional[str], typer.Argument(help="One process (default: all of them).")] = None,
        on: Annotated[Optional[str], typer.Option("--on", help=ON_HELP)] = None,
    ) -> int:
        from bridge import config as cfg
        from bridge.apps import service

        answers = service.control(cfg.load(required=True), on or target, action, process)
        for answer in answers:
            if answer.ok:
                ui.say(f"{answer.host}: {answer.data.get('done')}")
        _say_errors(answers)
        return service.exit_code(answers)

    command.__name__ = action
    return command


def _split_target(config: object, words: list[str], on: str | None) -> tuple[Optional[str], list[str]]:
    """`[TARGET] KEY…`: without --on, a first word made of remote or group names (or `all`) is the target."""
    names = {*config.remotes, *config.groups, "all"}  # type: ignore[attr-defined]
    if on is None and words and all(part in names for part in words[0].split(",")):
        return words[0], words[1:]
    return on, words


def config_set(
    words: Annotated[list[str], typer.Argument(help="[TARGET] KEY=VALUE…", metavar="[TARGET] KEY=VALUE…")],
    on: Annotated[Optional[str], typer.Option("--on", help=ON_HELP)] = None,
    no_restart: Annotated[bool, typer.Option("--no-restart", help="Do not restart the processes.")] = False,
) -> int:
    """Set config values of the app on the server (its processes restart to read them)."""
    from bridge import config as cfg
    from bridge.apps import service

    config = cfg.load(required=True)
    spec, pairs = _split_target(config, words, on)
    answers = service.config_set(config, spec, service.parse_pairs(pairs), not no_restart)
    _say_changes(answers)
    return service.exit_code(answers)


def config_unset(
    words: Annotated[list[str], typer.Argument(help="[TARGET] KEY…", metavar="[TARGET] KEY…")],
    on: Annotated[Optional[str], typer.Option("--on", help=ON_HELP)] = None,
    no_restart: Annotated[bool, typer.Option("--no-restart", help="Do not restart the processes.")] = False,
) -> int:
    """Remove config values of the app on the server."""
    from bridge import config as cfg
    from bridge.apps import service

    config = cfg.load(required=True)
    spec, keys = _split_target(config, words, on)
    answers = service.config_unset(config, spec, keys, not no_restart)
    _say_changes(answers)
    return service.exit_code(answers)


def config_list(
    target: Annotated[Optional[str], typer.Argument(help=TARGET_HELP)] = None,
    on: Annotated[Optional[str], typer.Option("--on", help=ON_HELP)] = None,
    show: Annotated[bool, typer.Option("--show", help="Print the values (masked otherwise).")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> int:
    """The app's config keys on each target (values masked unless --show)."""
    from bridge import config as cfg
    from bridge.apps import service

    answers = service.config_list(cfg.load(required=True), on or target)
    shown = [(a, {k: v if show else MASK for k, v in a.data.get("config", {}).items()}) for a in answers]
    if json:
        ui.print_json([{**a.to_dict(), "config": values} for a, values in shown])
    else:
        ui.table(None, ["host", "key", "value"], [[a.host, k, v] for a, values in shown for k, v in values.items()])
        _say_errors(answers)
    return service.exit_code(answers)


def _say_changes(answers: list) -> None:
    for answer in answers:
        if answer.ok:
            changed = ", ".join(answer.data.get("changed") or []) or "nothing"
            restarted = answer.data.get("restarted")
            ui.say(f"{answer.host}: changed {changed}" + (f"; {restarted}" if restarted else ""))
    _say_errors(answers)


def _say_errors(answers: list) -> None:
    for answer in answers:
        if not answer.ok:
            ui.say(f"{answer.host}: {answer.error}", err=True)
