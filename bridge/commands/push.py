"""`bridge push` once parsed: plan, push to every target, print what happens, return the exit code.

Both the Typer command (bridge.commands.sync) and the Typer-free fast path (bridge.commands.push_fast)
call `push`, so they print the same lines and exit with the same codes. Lines go out through
bridge.ui as each event arrives; Rich is loaded only for the summary table on a terminal.
"""
from __future__ import annotations

import threading
from typing import Any

from bridge import ui


def push(spec: str | None, *, wip: bool = False, deploy: bool = True, force: bool = False,
         redeploy: bool = False, verbose: bool = False) -> int:
    """Push the current branch (or a --wip snapshot) to `spec`'s targets; the fleet exit code (DESIGN §4)."""
    from bridge import config as cfg
    from bridge.fleet import fleet_exit_code
    from bridge.sync import service

    config = cfg.load(required=True)
    with service.plan_push(config, spec, wip_=wip, deploy=deploy, force=force, redeploy=redeploy) as job:
        _render_plan(job)
        renderer = make_renderer([r.name for r in job.remotes], verbose)
        try:
            with renderer:
                results = service.push(config, job, renderer.emit)
        except KeyboardInterrupt:
            renderer.interrupted([r.name for r in job.remotes], job.plan.sha)
            raise
    if len(results) > 1:
        _render_push_table(results)
    return fleet_exit_code(r.exit_code for r in results)


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


def make_renderer(hosts: list[str], verbose: bool) -> "PushRenderer":
    """Several hosts on a terminal: one live row each (LiveRenderer); else every line (piped output stays whole)."""
    if len(hosts) > 1 and not verbose and ui.console().is_terminal:
        return LiveRenderer(hosts)
    return PushRenderer(multi=len(hosts) > 1)


class PushRenderer:
    """Prints events from the push threads as they come: step lines, hook output, a per-host summary."""

    def __enter__(self) -> "PushRenderer":
        return self

    def __exit__(self, *exc: object) -> None:
        """Nothing to stop: every line is out already."""

    def __init__(self, multi: bool) -> None:
        self.multi = multi
        self.lock = threading.Lock()
        self.deploying: set[str] = set()  # hosts whose hook reported a step and no verdict yet
        self.finished: set[str] = set()

    def interrupted(self, hosts: list[str], sha: str) -> None:
        """Ctrl-C: say, host by host, whether the server goes on (the hook ignores the client's going
        away and finishes the deploy) and how to follow or stop it."""
        for host in hosts:
            if host in self.finished:
                continue
            if host in self.deploying:
                ui.say(f"{host}: interrupted here, but the server goes on deploying {sha[:12]}: "
                       f"`bridge status {host}` shows how it ends; `bridge deploy cancel {host}` stops it "
                       "(`current` stays)", err=True)
            else:
                ui.say(f"{host}: interrupted before the server reported a deploy; if the push reached it, "
                       f"it deploys {sha[:12]}: `bridge status {host}` tells", err=True)

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
        self.deploying.add(step.host)
        if step.event == "end":
            ui.say(f"{self._prefix(step.host)}  {ui.mark(step.ok):4} {step.name} {step.duration or 0:.2f}s")

    def _done(self, result: Any) -> None:
        self.finished.add(result.host)
        prefix = self._prefix(result.host) or result.host + ":"
        for line in _overwritten_lines(result):
            ui.say(f"{prefix} {line}")
        if result.error:
            ui.say(f"{prefix} {result.status}: {result.error}", err=True)
            if result.hint:
                ui.say(f"  hint: {result.hint}", err=True)
            return
        ui.say(f"{prefix} {_summary(result)}")


class LiveRenderer(PushRenderer):
    """A push to several hosts on a terminal: one live row per host (step, elapsed, result); a host's
    whole log is printed only when it fails, so four hosts' pip output never interleaves on screen."""

    def __init__(self, hosts: list[str]) -> None:
        super().__init__(multi=True)
        import time

        self.clock = time.monotonic
        self.rows: dict[str, dict[str, Any]] = {host: {"step": "connecting", "began": self.clock(), "result": ""} for host in hosts}
        self.logs: dict[str, list[str]] = {host: [] for host in hosts}
        self.live: Any = None

    def __enter__(self) -> "LiveRenderer":
        from rich.live import Live

        self.live = Live(get_renderable=self._table, console=ui.console(), refresh_per_second=4, transient=False)
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(*exc)

    def emit(self, event: Any) -> None:
        from bridge.sync.report import Line, Step
        from bridge.sync.service import HostDone

        with self.lock:
            if isinstance(event, Step):
                self.deploying.add(event.host)
                if event.event == "start":
                    self.rows[event.host]["step"] = event.name
                self.logs[event.host].append(f"{ui.mark(event.ok):4} {event.name}" if event.event == "end" else
                                             f"-> {event.name}")
            elif isinstance(event, Line):
                self.logs[event.host].append(event.text)
            elif isinstance(event, HostDone):
                self._finish(event.result)

    def _finish(self, result: Any) -> None:
        self.finished.add(result.host)
        row = self.rows[result.host]
        row.update(result=result.status, step="" if result.ok else row["step"], ended=self.clock())
        if not result.ok:
            out = self.live.console
            out.print(f"[{result.host}] {result.status}: {result.error}", markup=False, highlight=False)
            for line in self.logs[result.host]:
                out.print(f"[{result.host}]  | {line}", markup=False, highlight=False)
            if result.hint:
                out.print(f"  hint: {result.hint}", markup=False, highlight=False)

    def _table(self) -> Any:
        from rich.table import Table

        grid = Table(box=None, show_header=True)
        for column in ("host", "step", "elapsed", "result"):
            grid.add_column(column)
        for host, row in self.rows.items():
            elapsed = row.get("ended", self.clock()) - row["began"]
            grid.add_row(host, row["step"], f"{elapsed:.1f}s", row["result"] or "…")
        return grid


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
