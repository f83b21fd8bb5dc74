"""`bridge agent up/status/install`: on a server, dial the hub over wss and serve the streams it opens (DESIGN §9)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bridge import ui

StateOpt = Annotated[Optional[Path], typer.Option("--state", help="The agent's state dir (default $XDG_STATE_HOME/bridge/agent).")]
SshOpt = Annotated[str, typer.Option("--ssh", help="The local sshd each stream is handed to.")]
SshUserOpt = Annotated[str, typer.Option("--ssh-user", help="Account the hub's API runs log in as (default: this one).")]
PingOpt = Annotated[float, typer.Option("--ping", help="Seconds between WebSocket pings; a dead hub is noticed within two.")]
WorkspaceOpt = Annotated[Optional[list[str]], typer.Option(
    "--workspace", help="NAME=PATH: a workspace this server holds (its remote path); web terminals start there.")]


def register(app: typer.Typer) -> None:
    """Add the `agent` sub-app."""
    agent_app = typer.Typer(help="Dial a bridge hub from this server (outbound wss only).", no_args_is_help=True)
    agent_app.command("up", epilog="Example: bridge agent up --hub wss://hub.example.com --token eyJ…")(up)
    agent_app.command("status", epilog="Example: bridge agent status --json")(status)
    agent_app.command("install", epilog="Example: sudo bridge agent install")(install)
    app.add_typer(agent_app, name="agent")


def up(hub: Annotated[Optional[str], typer.Option("--hub", help="wss://HOST[:PORT] (needed to enrol).")] = None,
       token: Annotated[Optional[str], typer.Option("--token", help="A one-time enrolment token (or BRIDGE_AGENT_TOKEN).",
                                                    envvar="BRIDGE_AGENT_TOKEN", show_envvar=False)] = None,
       ssh: SshOpt = "127.0.0.1:22", ssh_user: SshUserOpt = "", ping: PingOpt = 20.0,
       backoff_cap: Annotated[float, typer.Option("--backoff-cap", help="Longest wait between reconnects (s).")] = 30.0,
       state: StateOpt = None, workspace: WorkspaceOpt = None) -> int:
    """Connect to the hub and stay connected, reconnecting forever; SIGTERM stops it."""
    from bridge.agent import service

    options = service.UpOptions(hub, token, ssh, ssh_user, ping, backoff_cap, state, service.parse_workspaces(workspace or []))
    service.up(options, lambda line: ui.say(f"agent: {line}"))
    ui.say("agent: stopped")
    return 0


def status(json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False, state: StateOpt = None) -> int:
    """Show the agent's link: state, connected since, round trip, reconnects, last error; exit 1 if not running."""
    from bridge.agent import service

    current = service.status(state)
    return ui.status_report(current, _rows, "no agent has run here; start one with "
                                            "`bridge agent up --hub wss://HUB --token T`", json)


def _rows(current: dict) -> list[list[str]]:
    rtt = current["rtt_ms"]
    error = current["last_error"]
    return [
        ["state", current["state"]], ["pid", str(current["pid"])], ["agent", current["agent"]], ["hub", current["hub"]],
        ["connected since", ui.when(current["connected_since"])],
        ["round trip", "-" if rtt is None else f"{rtt:g} ms, {ui.ago(current['last_heartbeat_at'])}"],
        ["streams", str(current["streams"])], ["reconnects", str(current["reconnects"])],
        ["last error", f"{error} ({ui.ago(current['last_error_at'])})" if error else "-"],
    ]


def install(ssh: SshOpt = "127.0.0.1:22", ssh_user: SshUserOpt = "", ping: PingOpt = 20.0, state: StateOpt = None,
            workspace: WorkspaceOpt = None,
            user: Annotated[Optional[str], typer.Option("--user", help="Account the agent runs as.")] = None,
            path: Annotated[Optional[Path], typer.Option("--path", help="Write here instead of /etc/systemd/system/.")] = None,
            print_only: Annotated[bool, typer.Option("--print", help="Print the unit instead of writing it.")] = False,
            python: Annotated[Optional[Path], typer.Option("--python", help="The interpreter the unit runs bridge with "
                                                           "(default: this one); --user must be able to run it.")] = None,
            ) -> int:
    """Write a sandboxed systemd unit that runs `bridge agent up` at boot (enrol first: the unit holds no token)."""
    from bridge.agent import service

    options = service.UpOptions(ssh=ssh, ssh_user=ssh_user, ping_interval=ping, state=state,
                                workspaces=service.parse_workspaces(workspace or []))
    if print_only:
        ui.say(service.unit_text(options, user, python).rstrip("\n"))
        return 0
    ui.unit_written(service.install(options, user, path, python))
    return 0
