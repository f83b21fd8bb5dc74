"""`bridge hub serve/install/token/revoke/login`: the control plane that agents dial out to (DESIGN §9)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bridge import ui

StateOpt = Annotated[Optional[Path], typer.Option("--state", help="The hub's state dir (default $XDG_STATE_HOME/bridge/hub).")]
CertOpt = Annotated[Optional[Path], typer.Option("--cert", help="PEM certificate (default: self-signed, made on first run).")]
KeyOpt = Annotated[Optional[Path], typer.Option("--key", help="PEM key for --cert.")]
HostOpt = Annotated[str, typer.Option("--host", help="Address to listen on.")]
PortOpt = Annotated[int, typer.Option("--port", help="Port to listen on.")]
PingOpt = Annotated[float, typer.Option("--ping", help="Seconds between WebSocket pings to each agent.")]


def register(app: typer.Typer) -> None:
    """Add the `hub` sub-app."""
    hub_app = typer.Typer(help="The control plane agents dial out to (HTTPS + WebSocket, TLS 1.3).",
                          no_args_is_help=True)
    hub_app.command("serve", epilog="Example: bridge hub serve --port 8443")(serve)
    hub_app.command("install", epilog="Example: sudo bridge hub install --port 443")(install)
    token_app = typer.Typer(help="Make tokens (run on the hub's machine).", no_args_is_help=True)
    token_app.command("agent", epilog="Example: bridge hub token agent web1")(token_agent)
    token_app.command("user", epilog="Example: bridge hub token user ann --role operator --workspace app --ttl 8h")(
        token_user)
    hub_app.add_typer(token_app, name="token")
    hub_app.command("revoke", epilog="Example: bridge hub revoke web1")(revoke)
    hub_app.command("login", epilog="Example: bridge hub login hub.example.com:8443 --token eyJ…")(login)
    app.add_typer(hub_app, name="hub")


def serve(host: HostOpt = "0.0.0.0", port: PortOpt = 443, state: StateOpt = None, cert: CertOpt = None,
          key: KeyOpt = None, ping: PingOpt = 20.0) -> int:
    """Serve the hub until Ctrl-C or SIGTERM; prints the certificate fingerprint clients pin."""
    from bridge.hub import service
    from bridge.hub.server import ServeOptions

    def announce(address: str, fingerprint: str, ssh_public: str) -> None:
        ui.say(f"hub: listening on {address}")
        ui.say(f"hub: API runs log in to servers with: {ssh_public}")
        ui.say(f"hub:   grant it on a server with: bridge keys add hub --role operator --key '{ssh_public}'")
        ui.say(f"hub: certificate fingerprint {fingerprint}")

    service.serve(ServeOptions(host, port, state, cert, key, ping), announce)
    return 0


def install(host: HostOpt = "0.0.0.0", port: PortOpt = 443, state: StateOpt = None, cert: CertOpt = None,
            key: KeyOpt = None, ping: PingOpt = 20.0,
            user: Annotated[Optional[str], typer.Option("--user", help="Account the hub runs as.")] = None,
            path: Annotated[Optional[Path], typer.Option("--path", help="Write here instead of /etc/systemd/system/.")] = None,
            print_only: Annotated[bool, typer.Option("--print", help="Print the unit instead of writing it.")] = False,
            python: Annotated[Optional[Path], typer.Option("--python", help="The interpreter the unit runs bridge with "
                                                           "(default: this one); --user must be able to run it.")] = None,
            ) -> int:
    """Write a sandboxed systemd unit that runs `bridge hub serve` at boot and restarts it always."""
    from bridge.hub import service
    from bridge.hub.server import ServeOptions

    options = ServeOptions(host, port, state, cert, key, ping)
    if print_only:
        ui.say(service.unit_text(options, user, python).rstrip("\n"))
        return 0
    ui.unit_written(service.install(options, user, path, python))
    return 0


def token_agent(name: Annotated[str, typer.Argument(help="The agent's name (its hub:// remotes use it).")],
                state: StateOpt = None, cert: CertOpt = None, key: KeyOpt = None) -> int:
    """Print a one-time enrolment token for a new agent (it carries this hub's certificate pin)."""
    from bridge.hub import service

    ui.say(service.agent_token(name, state, cert, key))
    return 0


def token_user(name: Annotated[str, typer.Argument(help="Who the token is for.")],
               role: Annotated[str, typer.Option("--role", help="A policy role: viewer, operator, admin, …")],
               workspace: Annotated[Optional[list[str]], typer.Option("--workspace", help="Limit to this workspace (repeatable).")] = None,
               ttl: Annotated[str, typer.Option("--ttl", help="Lifetime: 90s, 30m, 8h, 7d.")] = "8h",
               state: StateOpt = None, cert: CertOpt = None, key: KeyOpt = None) -> int:
    """Print a user token for the CLI (`bridge hub login`) and the HTTP API."""
    from bridge.hub import service

    ui.say(service.user_token(name, role, workspace or [], service.parse_ttl(ttl), state, cert, key))
    return 0


def revoke(name: Annotated[str, typer.Argument(help="An agent or user name.")], state: StateOpt = None) -> int:
    """Revoke an agent or user: its tokens stop working and its live connections close within a second."""
    from bridge.hub import service

    service.revoke(name, state)
    ui.say(f"revoked {name}")
    return 0


def login(hub: Annotated[str, typer.Argument(help="wss://HOST[:PORT] or HOST[:PORT].")],
          token: Annotated[str, typer.Option("--token", help="A user token from `bridge hub token user`.",
                                             envvar="BRIDGE_HUB_TOKEN", show_envvar=False)]) -> int:
    """Check the hub's certificate against the token's pin, then keep the token and pin (0600)."""
    from bridge.hub import service

    result = service.login(hub, token)
    ui.say(f"hub {result.hub}: certificate fingerprint {result.fingerprint} (pinned)")
    ui.say(f"logged in as {result.user} ({result.role}); token kept in {result.path} (0600)")
    return 0
