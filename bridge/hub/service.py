"""`bridge hub serve/install/token/revoke/login`: the glue between the CLI, the store and the server."""
from __future__ import annotations

import getpass
import socket
import sys
from pathlib import Path
from typing import Callable, NamedTuple

from bridge import hublink, systemd
from bridge.errors import BridgeError, ConnectError, UsageError
from bridge.hub.server import ServeOptions, certificate, state_dir

UNIT_NAME = "bridge-hub.service"
FILE_LIMIT = 65536  # open files: one socket per agent, far past the 1,000 the bench holds


def serve(options: ServeOptions, announce: Callable[[str, str, str], None]) -> None:
    """Serve until SIGINT/SIGTERM; `announce(address, fingerprint, ssh public key)` once the port is bound.

    Raises BridgeError when the port cannot be bound.
    """
    from bridge.hub.runs import ssh_key
    from bridge.hub.server import build

    _raise_fd_limit()
    server, files = build(options)
    listener = _listen(options.host, options.port)
    announce(f"wss://{options.host}:{listener.getsockname()[1]}", files.fingerprint, ssh_key(state_dir(options.state))[1])
    server.run(sockets=[listener])


def _raise_fd_limit() -> int:
    """Lift the soft open-file limit to the hard one and return it: every agent holds a socket, and a
    login session's default soft limit (1024 on Debian) would refuse agents past the thousandth."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)  # Linux caps "unlimited" at nr_open
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):  # a container's hard limit above the kernel's nr_open: keep what we have
            return soft
    return max(soft, wanted)


def _listen(host: str, port: int) -> socket.socket:
    """The bound, listening socket, made here so a busy port is one clear error, not a server log line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose proto says TCP, and
    # without it Nagle held each keystroke's echo to a browser ~10 ms (bench/bench_webterm.py)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise BridgeError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                          hint="is another process on that port? pick another with --port") from e
    sock.listen(1024)
    return sock


def unit_text(options: ServeOptions, user: str | None, python: Path | None = None) -> str:
    """The sandboxed systemd unit that runs this `bridge hub serve` at boot, as `user` with `python`.

    Raises BridgeError when `user` cannot run `python` with bridge. It may write only its state dir and
    its account's ~/.ssh (the known_hosts the hub pins agents' host keys in); a port below 1024 gets
    CAP_NET_BIND_SERVICE and nothing else.
    """
    account, interpreter = user or getpass.getuser(), python or Path(sys.executable)
    systemd.check_runnable(account, interpreter, "bridge hub install")
    state = unit_state(options, account)
    argv = [str(interpreter), "-m", "bridge", "hub", "serve", "--host", options.host, "--port", str(options.port),
            "--state", str(state), "--ping", f"{options.ping_interval:g}"]
    if options.cert and options.key:
        argv += ["--cert", str(options.cert.resolve()), "--key", str(options.key.resolve())]
    sandbox = systemd.hardening([state, _ssh_dir(account)],
                                ["CAP_NET_BIND_SERVICE"] if options.port < 1024 else [])
    # every agent holds a socket; the sandbox refuses setrlimit, so the unit sets the limit itself
    return systemd.render_unit(description="bridge hub (control plane)", argv=argv, user=account,
                               sandbox=[*sandbox, f"LimitNOFILE={FILE_LIMIT}"])


def unit_state(options: ServeOptions, user: str) -> Path:
    """--state, else `user`'s own ~/.local/state/bridge/hub (the unit's account, not the installing one)."""
    return (options.state or systemd.unit_state_dir(user) / "hub").resolve()


def _ssh_dir(user: str) -> Path:
    import pwd

    return Path(pwd.getpwnam(user).pw_dir) / ".ssh"


def install(options: ServeOptions, user: str | None, path: Path | None, python: Path | None = None) -> Path:
    """Write the hub's unit (default /etc/systemd/system/bridge-hub.service) and make the folders it may
    write, owned by `user`; raises BridgeError when that cannot be done or `user` cannot run `python`."""
    account = user or getpass.getuser()
    text = unit_text(options, account, python)
    systemd.make_owned(unit_state(options, account), account)
    systemd.make_owned(_ssh_dir(account), account)
    return systemd.install(text, UNIT_NAME, path, "bridge hub install")


def _signer(state: Path | None, cert: Path | None, key: Path | None) -> "object":
    from bridge.hub.store import Store
    from bridge.hub.tokens import Signer

    folder = state_dir(state)
    files = certificate(ServeOptions(state=state, cert=cert, key=key))
    store = Store(folder / "hub.db")
    return Signer(folder, store, files.fingerprint)


def agent_token(name: str, state: Path | None = None, cert: Path | None = None, key: Path | None = None) -> str:
    """A one-time enrolment token for agent `name`, carrying this hub's certificate pin."""
    _check_name(name)
    return _signer(state, cert, key).enrolment(name)  # type: ignore[attr-defined]


def user_token(name: str, role: str, workspaces: list[str], ttl: float, state: Path | None = None,
               cert: Path | None = None, key: Path | None = None) -> str:
    """A user token for the CLI and API; raises UsageError for a role the hub's policy does not define."""
    from bridge.security.policy import load_policy

    _check_name(name)
    roles = load_policy().roles
    if role not in roles:
        raise UsageError(f"unknown role `{role}`", hint=f"roles: {', '.join(sorted(roles))}")
    if ttl <= 0:
        raise UsageError("--ttl must be positive", hint="e.g. --ttl 8h")
    return _signer(state, cert, key).user(name, role, workspaces, ttl)  # type: ignore[attr-defined]


def revoke(name: str, state: Path | None = None) -> None:
    """Revoke `name`: the serving hub closes its live connections within a second; UsageError if unknown."""
    from bridge.hub.store import Store

    if not Store(state_dir(state) / "hub.db").revoke(name):
        raise UsageError(f"the hub never issued a token to `{name}`", hint="check the name")


def _check_name(name: str) -> None:
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise UsageError(f"bad name `{name}`", hint="use letters, digits, '-', '_' and '.'")


def parse_ttl(text: str) -> float:
    """`90`, `90s`, `30m`, `8h`, `7d` in seconds; raises UsageError."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        return float(number) * units[unit]
    except ValueError as e:
        raise UsageError(f"cannot read --ttl `{text}`", hint="e.g. 90s, 30m, 8h, 7d") from e


class LoginResult(NamedTuple):
    """Who the hub says we are, and the pin now kept."""

    hub: str
    fingerprint: str
    user: str
    role: str
    path: Path


def login(hub_text: str, token: str) -> LoginResult:
    """Check the hub's certificate against the pin the token carries, check the token, keep both 0600.

    Raises ConnectError when the hub cannot be reached or shows another certificate, AuthError when
    it refuses the token.
    """
    hub = hublink.parse_hub(hub_text)
    claims = hublink.token_claims(token)
    if claims.get("typ") != "user":
        raise UsageError("that is not a user token", hint="make one with `bridge hub token user NAME --role ROLE`")
    offered = _ask_agents(hub, token, str(claims.get("fp", "")))
    path = hublink.save_login(hub, hublink.Login(token, offered))
    return LoginResult(hub.display(), offered, str(claims.get("sub")), str(claims.get("role")), path)


def _ask_agents(hub: hublink.HubAddress, token: str, pin: str) -> str:
    """GET /api/v1/agents over a connection whose certificate matched `pin`; returns the fingerprint."""
    import http.client

    connection = http.client.HTTPSConnection(hub.host, hub.port, context=hublink.client_context(), timeout=10)
    try:
        connection.connect()
        hublink.check_pin(connection.sock, pin, hub)  # before the token leaves this machine
        connection.request("GET", "/api/v1/agents", headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        body = response.read()
    except OSError as e:
        raise ConnectError(f"cannot reach hub {hub.display()}: {e.strerror or e}") from e
    finally:
        connection.close()
    if response.status != 200:
        raise hublink.refusal(hublink.CLOSE_UNAUTHORIZED, _api_error(body, response.reason), hub)
    return pin


def _api_error(body: bytes, fallback: str) -> str:
    """The `error` field of an API error response, else the HTTP reason."""
    import json

    try:
        return str(json.loads(body).get("error") or fallback)
    except (ValueError, AttributeError):
        return fallback
