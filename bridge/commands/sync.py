"""`bridge push`, `pull`, `status`, `rollback`: parse, call bridge.sync.service, render its events."""
from __future__ import annotations

import threading
from typing import Annotated, Any, Optional

import typer

from bridge import ui

TARGET_HELP = "Remote, group, a,b list or `all` (default: the `default:` remote)."


def register(app: typer.Typer) -> None:
    """Add the sync commands to the app."""
    app.command(epilog="Example: bridge push prod --wip")(push)
    app.command(epilog="Example: bridge pull prod")(pull)
    app.command(epilog="Example: bridge status --json")(status)
    app.command(epilog="Example: bridge rollback prod --to 20260101T120000.000Z-0123456789ab")(rollback)


def _lean_ssh() -> None:
    """Before paramiko loads: skip its optional invoke import (a large share of a cold push)."""
    from bridge.ssh.pool import skip_invoke

    skip_invoke()


def push(
    target: Annotated[Optional[str], typer.Argument(help=TARGET_HELP)] = None,
    on: Annotated[Optional[str], typer.Option("--on", help="Same as TARGET: a remote, group, list or all.")] = None,
    wip: Annotated[bool, typer.Option("--wip", help="Ship uncommitted and untracked files as a snapshot.")] = False,
    no_deploy: Annotated[bool, typer.Option("--no-deploy", help="Push only; the server does not deploy.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the server's branch (says what it drops).")] = False,
) -> int:
    """Push the current branch; each server deploys it and the report streams back."""
    _lean_ssh()
    from bridge import config as cfg
    from bridge.sync import service

    config = cfg.load(required=True)
    job = service.plan_push(config, on or target, wip_=wip, deploy=not no_deploy, force=force)
    _render_plan(job)
    renderer = PushRenderer(multi=len(job.remotes) > 1)
    results = service.push(config, job, renderer.emit)
    if len(results) > 1:
        _render_push_table(results)
    return _fleet_code([r.exit_code for r in results])


def _render_plan(job: Any) -> None:
    plan = job.plan
    what = f"snapshot {plan.sha[:12]} of {plan.branch} (--wip)" if plan.wip else f"{plan.branch} ({plan.sha[:12]})"
    ui.say(f"pushing {what} to {', '.join(r.name for r in job.remotes)}")
    if job.not_shipped:
        ui.say(f"not shipped ({len(job.not_shipped)} uncommitted; commit them, or use --wip):")
        for change in job.not_shipped[:20]:
            ui.say(f"  {change}")
        if len(job.not_shipped) > 20:
            ui.say(f"  … and {len(job.not_shipped) - 20} more")
    for name in job.skipped:
        ui.say(f"skipped {name}: a plain git remote gets no --wip snapshot")


class PushRenderer:
    """Prints events from the push threads as they come: step lines, hook output, a per-host summary."""

    def __init__(self, multi: bool) -> None:
        self.multi = multi
        self.lock = threading.Lock()

    def emit(self, event: Any) -> None:
        from bridge.sync.report import Line, Step
        from bridge.sync.service import HostDone

        with self.lock:
            if isinstance(event, Step):
                self._step(event)
            elif isinstance(event, Line):
                ui.say(f"{self._prefix(event.host)}  | {event.text}")
            elif isinstance(event, HostDone):
                self._done(event.result)

    def _prefix(self, host: str) -> str:
        return f"[{host}]" if self.multi else ""

    def _step(self, step: Any) -> None:
        if step.event == "end":
            ui.say(f"{self._prefix(step.host)}  {ui.mark(step.ok):4} {step.name} {step.duration or 0:.2f}s")

    def _done(self, result: Any) -> None:
        prefix = self._prefix(result.host) or result.host + ":"
        for line in _overwritten_lines(result):
            ui.say(f"{prefix} {line}")
        if result.error:
            ui.say(f"{prefix} {result.status}: {result.error}", err=True)
            if result.hint:
                ui.say(f"  hint: {result.hint}", err=True)
            return
        ui.say(f"{prefix} {_summary(result)}")


def _overwritten_lines(result: Any) -> list[str]:
    if not result.overwritten:
        return []
    return [f"--force overwrote {len(result.overwritten)} commit(s) on the server:",
            *[f"  {line}" for line in result.overwritten]]


def _summary(result: Any) -> str:
    done = result.report.done or {}
    if result.status != "deployed":
        return f"{result.status} {result.sha[:12]}"
    return (f"deployed {result.sha[:12]} -> releases/{done.get('release')}; deps {done.get('deps')}; "
            f"{done.get('duration', 0):.2f}s")


def _render_push_table(results: list) -> None:
    rows = []
    for r in results:
        done = r.report.done or {}
        rows.append([r.host, r.status, r.sha[:12], done.get("release", ""), done.get("deps", ""),
                     f"{done['duration']:.2f}s" if "duration" in done else "", r.error or ""])
    ui.table("push summary", ["host", "status", "commit", "release", "deps", "deploy", "error"], rows)


def _fleet_code(codes: list[int]) -> int:
    """0 all ok; 255 if a host was unreachable; else the first failure's code (DESIGN §4)."""
    if all(c == 0 for c in codes):
        return 0
    if len(codes) > 1:
        return 255 if 255 in codes else 1
    return codes[0]


def pull(target: Annotated[Optional[str], typer.Argument(help=TARGET_HELP)] = None) -> int:
    """Bring commits made on the server back: fast-forward, else a merge that never discards local work."""
    _lean_ssh()
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
    json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> int:
    """Local branch vs each remote: ahead/behind, dirty files, deployed commit, last deploy, reachable."""
    _lean_ssh()
    from bridge import config as cfg
    from bridge.sync import service

    config = cfg.load(required=True)
    rows = service.status(config, target or "all")
    if json:
        ui.print_json([r.to_dict() for r in rows])
    else:
        _render_status(rows)
    return 0 if all(r.reachable for r in rows) else 255


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
    _lean_ssh()
    from bridge import config as cfg
    from bridge.sync import rollback as rb
    from bridge.sync import service

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
