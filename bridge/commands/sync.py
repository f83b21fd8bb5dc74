"""`bridge push`, `pull`, `status`, `rollback`: parse, call bridge.sync.service, render its events.

push runs bridge.commands.push, as the Typer-free fast path (bridge.commands.push_fast) does: Typer
parses only what that path leaves to it (--help, odd flags), and both print the same.
"""
from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from bridge import ui
from bridge.commands.model import typer_function
from bridge.sync.options import PUSH, TARGET_HELP


def register(app: typer.Typer) -> None:
    """Add the sync commands to the app."""
    app.command("push", epilog="Example: bridge push prod --wip")(typer_function(PUSH, push))
    app.command(epilog="Example: bridge pull prod")(pull)
    app.command(epilog="Example: bridge status --json")(status)
    app.command(epilog="Example: bridge rollback prod --to 20260101T120000.000Z-0123456789ab")(rollback)
    deploy_app = typer.Typer(help="Control a deploy in progress.", no_args_is_help=True)
    deploy_app.command("cancel", epilog="Example: bridge deploy cancel prod")(deploy_cancel)
    app.add_typer(deploy_app, name="deploy")


def push(fields: dict) -> int:
    """Push the current branch; each server deploys it and the report streams back."""
    from bridge.commands.push_fast import run
    from bridge.sync.options import PushOptions

    return run(PushOptions(**fields))


def pull(target: Annotated[Optional[str], typer.Argument(help=TARGET_HELP)] = None) -> int:
    """Bring commits made on the server back: fast-forward, else a merge that never discards local work."""
    from bridge import config as cfg
    from bridge.sync import service

    for result in service.pull(cfg.load(required=True), target):
        ui.say(_pull_line(result))
    return 0


def _pull_line(result: Any) -> str:
    where = f"{result.remote}/{result.branch}"
    if result.action == "nothing":
        return f"{where}: the server has no such branch; nothing to pull"
    if result.action == "up-to-date":
        return f"{where}: already up to date"
    verb = "fast-forwarded" if result.action == "fast-forward" else "merged"
    return f"{where}: {verb} {result.commits} commit(s); HEAD is {result.sha[:12]}"


def status(
    target: Annotated[Optional[str], typer.Argument(help=TARGET_HELP)] = None,
    on: Annotated[Optional[str], typer.Option("--on", help="Same as TARGET: a remote, group, list or all.")] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> int:
    """Local branch vs each remote: ahead/behind, dirty files, deployed commit, last deploy, reachable."""
    from bridge import config as cfg
    from bridge.fleet import fleet_exit_code
    from bridge.sync import service

    config = cfg.load(required=True)
    rows = service.status(config, on or target or "all")
    if json:
        ui.print_json([r.to_dict() for r in rows])
    else:
        _render_status(rows)
    return fleet_exit_code(r.exit_code for r in rows)


def _render_status(rows: list) -> None:
    dirty = rows[0].dirty if rows else []
    if dirty:
        ui.say(f"dirty ({len(dirty)}): " + ", ".join(dirty[:10]) + (" …" if len(dirty) > 10 else ""))
    table = [[r.remote, "yes" if r.reachable else "NO", _sync_cell(r), (r.deployed_sha or "")[:12], r.current or "",
              _last_cell(r.last), r.error or ""] for r in rows]
    ui.table(f"branch {rows[0].branch}" if rows else None,
             ["remote", "reachable", "ahead/behind", "deployed", "release", "last deploy", "error"], table)


def _sync_cell(row: Any) -> str:
    if row.ahead is None:
        return "?" if row.remote_sha else ""
    return f"+{row.ahead} -{row.behind}" + ("" if row.remote_sha else " (not on remote)")


def _last_cell(last: dict | None) -> str:
    if not last:
        return ""
    failed = f" at {last['failed_step']}" if last.get("failed_step") else ""
    when = last.get("start", "")[:19]
    return f"{last.get('action', 'deploy')} {last.get('result')}{failed} {when} {last.get('duration', 0):.2f}s"


def rollback(
    target: Annotated[Optional[str], typer.Argument(help=TARGET_HELP)] = None,
    to: Annotated[Optional[str], typer.Option("--to", help="Release name (default: the one before current).")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List releases instead.")] = False,
) -> int:
    """Switch `current` back to an earlier release (`--list` shows them)."""
    from bridge import config as cfg
    from bridge.sync import rollback as rb
    from bridge.sync import service
    from bridge.commands.push import PushRenderer

    config = cfg.load(required=True)
    remote = service.server_remote(config, target)
    if list_:
        rows = rb.releases(config, remote)
        ui.table(f"releases on {remote.name}", ["", "release", "commit", "ref", "time"],
                 [["*" if r["current"] else "", r["release"], (r["sha"] or "")[:12], r["ref"] or "", r["time"] or ""]
                  for r in rows])
        return 0
    report = rb.rollback(config, remote, to, PushRenderer(multi=False).emit)
    done = report.done or {}
    ui.say(f"{remote.name}: current -> releases/{done.get('release')} (was {done.get('from')})")
    return 0


def deploy_cancel(
    target: Annotated[Optional[str], typer.Argument(help=TARGET_HELP)] = None,
    on: Annotated[Optional[str], typer.Option("--on", help="Same as TARGET: a remote, group, list or all.")] = None,
) -> int:
    """Stop the deploy running on each target; `current` stays as it was."""
    from bridge import config as cfg
    from bridge.sync import cancel

    results = cancel.cancel(cfg.load(required=True), on or target)
    for r in results:
        if r.error:
            ui.say(f"{r.host}: {r.error}", err=True)
        elif r.pid is None:
            ui.say(f"{r.host}: no deploy was running; current is releases/{r.current}")
        else:
            ui.say(f"{r.host}: cancelled the deploy (pid {r.pid}); current stays releases/{r.current}")
    return max((r.exit_code for r in results), default=0)
