"""`bridge tunnel up/status/down/install`: keep a server behind a firewall reachable through a relay."""
from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer

from bridge import ui


def register(app: typer.Typer) -> None:
    """Add the `tunnel` sub-app."""
    tunnel_app = typer.Typer(help="Reverse tunnel through a relay (any OpenSSH server).", no_args_is_help=True)
    tunnel_app.command("up", epilog="Example: bridge tunnel up   (under systemd: bridge tunnel install)")(up)
    tunnel_app.command("status", epilog="Example: bridge tunnel status --json")(status)
    tunnel_app.command("down", epilog="Example: bridge tunnel down")(down)
    tunnel_app.command("install", epilog="Example: sudo bridge tunnel install --user deploy")(install)
    app.add_typer(tunnel_app, name="tunnel")


def up() -> int:
    """Connect to `tunnel.relay` and keep its forwards up, reconnecting forever; SIGTERM stops it cleanly."""
    from bridge import config as cfg
    from bridge.tunnel import service

    config = cfg.load(required=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    log = lambda message: ui.say(f"tunnel: {message}", err=True)  # noqa: E731
    for event, changed in service.up(config, stop, log):
        if changed:
            ui.say(f"tunnel: {_describe(event)}")
    return 0


def _describe(event: object) -> str:
    """One log line per state change."""
    from bridge.tunnel import events as ev

    if isinstance(event, ev.Connecting):
        return f"connecting to {event.relay} (attempt {event.attempt})"
    if isinstance(event, ev.Connected):
        return f"connected to {event.relay}; asking for {', '.join(event.forwards)}"
    if isinstance(event, ev.ForwardUp):
        return f"forwarding {event.forward}"
    if isinstance(event, ev.ForwardRefused):
        return (f"error: {event.reason}; asking again at each heartbeat, the other forwards stay up"
                f"{_hint(event.hint)}")
    if isinstance(event, ev.Disconnected):
        return f"disconnected: {event.reason}"
    if isinstance(event, ev.Retrying):
        sooner = " (sooner if the relay's port answers)" if event.probing else ""
        return f"error: {event.error}; retrying in {event.in_s:g}s{sooner}{_hint(event.hint)}"
    return "stopped: forwards cancelled"


def _hint(hint: str | None) -> str:
    return f"\n  hint: {hint}" if hint else ""


def status(json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> int:
    """Show the running tunnel: state, connected since, forwards, heartbeat round trip, reconnects, last error."""
    from bridge import config as cfg
    from bridge.tunnel import service

    current = service.status(cfg.load(required=True))
    return ui.status_report(current, _status_rows, "no tunnel has run in this workspace; start one with "
                                                   "`bridge tunnel up`", json)


def _status_rows(current: dict) -> list[list[str]]:
    rtt = current["last_heartbeat_rtt_ms"]
    error = current["last_error"]
    return [
        ["state", current["state"]], ["pid", str(current["pid"])], ["relay", current["relay"]],
        ["connected since", ui.when(current["connected_since"])],
        *[[f"forward {f['forward']}", _forward_cell(f)] for f in current["forwards"]],
        ["last heartbeat", "-" if rtt is None else f"{rtt:g} ms round trip, {ui.ago(current['last_heartbeat_at'])}"],
        ["reconnects", str(current["reconnects"])],
        ["last error", f"{error} ({ui.when(current['last_error_at'])})" if error else "-"],
        *([["hint", current["hint"]]] if error and current["hint"] else []),
    ]


def _forward_cell(forward: dict) -> str:
    """`up since …`, or `refused since …: reason` and its next step."""
    cell = f"{forward['state']} since {ui.when(forward['since'])}"
    if forward["reason"]:
        cell += f": {forward['reason']}"
    return cell + (f"\nhint: {forward['hint']}" if forward["hint"] else "")


def down() -> int:
    """Stop the running tunnel: it cancels its forwards on the relay and exits."""
    from bridge import config as cfg
    from bridge.tunnel import service

    result = service.down(cfg.load(required=True))
    ui.say(f"stopped tunnel (pid {result.pid})" if result.stopped else "no tunnel is running here")
    return 0


def install(
    user: Annotated[Optional[str], typer.Option("--user", help="Run the tunnel as this user (default: you).")] = None,
    print_only: Annotated[bool, typer.Option("--print", help="Only print the unit.")] = False,
    path: Annotated[Optional[Path], typer.Option("--path", help="Write here instead of /etc/systemd/system/.")] = None,
    python: Annotated[Optional[Path], typer.Option("--python", help="The interpreter the unit runs bridge with "
                                                   "(default: this one); --user must be able to run it.")] = None,
) -> int:
    """Write a sandboxed systemd unit that runs `bridge tunnel up` at boot (no login needed), restarting always."""
    from bridge import config as cfg
    from bridge.tunnel import service

    config = cfg.load(required=True)
    if print_only:
        ui.say(service.unit_for(config, user, python)[1].rstrip("\n"))
        return 0
    ui.unit_written(service.install(config, user, path, python))
    return 0
