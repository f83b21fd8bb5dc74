"""`bridge agent up/status/install`: enrol once, then keep the link to the hub up forever."""
from __future__ import annotations

import asyncio
import getpass
import os
import signal
import sys
from pathlib import Path
from typing import Callable, NamedTuple

from bridge import hublink, systemd
from bridge.agent import state as st
from bridge.agent.link import Plan, Refused, control
from bridge.backoff import Backoff
from bridge.errors import BridgeError, UsageError
from bridge.procs import pid_alive

UNIT_NAME = "bridge-agent.service"
HEALTHY_AFTER = 10.0  # seconds connected before the next outage starts the backoff from its base again


class UpOptions(NamedTuple):
    """`bridge agent up`'s options."""

    hub: str | None = None
    token: str | None = None
    ssh: str = "127.0.0.1:22"
    ssh_user: str = ""
    ping_interval: float = 20.0
    backoff_cap: float = 30.0
    state: Path | None = None
    workspaces: tuple[tuple[str, str], ...] = ()  # (name, absolute path) of the workspaces this server holds


def parse_workspaces(pairs: list[str]) -> tuple[tuple[str, str], ...]:
    """`--workspace NAME=PATH` values; raises UsageError for one without a name or an absolute path."""
    parsed = []
    for pair in pairs:
        name, _, path = pair.partition("=")
        if not name or not path.startswith("/"):
            raise UsageError(f"--workspace {pair!r} is not NAME=/absolute/path",
                             hint="name the workspace and its remote path: --workspace app=/srv/app")
        parsed.append((name, path.rstrip("/") or "/"))
    return tuple(parsed)


def plan_for(options: UpOptions) -> Plan:
    """Enrol with a new token (kept until the hub accepts it), or resume the saved enrolment.

    Raises UsageError for a token that is not an enrolment token or a missing --hub.
    """
    folder = st.agent_dir(options.state)
    ssh_host, ssh_port = _host_port(options.ssh)
    if options.ping_interval <= 0 or options.backoff_cap <= 0:
        raise UsageError("--ping and --backoff-cap must be positive seconds")
    if options.token:
        enrolment, key = _enrol(folder, options)
    else:
        enrolment = st.require_enrolment(folder)
        key = st.agent_key(folder, fresh=False)
    return Plan(enrolment, key, folder, ssh_host, ssh_port, options.ssh_user or getpass.getuser(),
                options.ping_interval, options.backoff_cap, options.token if not enrolment.enrolled else None,
                options.workspaces)


def _enrol(folder: Path, options: UpOptions) -> tuple[st.Enrolment, bytes]:
    claims = hublink.token_claims(options.token or "")
    if claims.get("typ") != "enrol" or not claims.get("sub") or not claims.get("fp"):
        raise UsageError("that is not an agent enrolment token", hint="make one on the hub: `bridge hub token agent NAME`")
    if not options.hub:
        raise UsageError("enrolling needs --hub", hint="bridge agent up --hub wss://HUB[:PORT] --token T")
    enrolment = st.Enrolment(str(claims["sub"]), hublink.parse_hub(options.hub), str(claims["fp"]), False)
    key = st.agent_key(folder, fresh=True)
    st.save_enrolment(folder, enrolment)
    return enrolment, key


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"cannot read --ssh `{text}`", hint="write HOST:PORT, e.g. 127.0.0.1:22")
    return host.strip("[]"), int(port)


def up(options: UpOptions, log: Callable[[str], None]) -> None:
    """Keep the link up until SIGTERM/SIGINT; raises Refused when the hub refuses this agent for good."""
    plan = plan_for(options)
    _refuse_second_instance(plan.folder)
    asyncio.run(_run(plan, log))


async def _run(plan: Plan, log: Callable[[str], None]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, stop.set)
    status = st.AgentStatus(pid=os.getpid(), agent=plan.enrolment.agent, hub=plan.enrolment.hub.display())
    save = lambda: st.save_status(plan.folder, status)  # noqa: E731
    try:
        await _reconnect_forever(plan, status, save, log, stop)
    finally:
        status.state, status.connected_since = "stopped", None
        save()


async def _reconnect_forever(plan: Plan, status: st.AgentStatus, save: Callable[[], None],
                             log: Callable[[str], None], stop: asyncio.Event) -> None:
    backoff = Backoff(cap=plan.backoff_cap)
    while not stop.is_set():
        status.state = "connecting"
        save()
        link = asyncio.create_task(_connect_once(plan, status, save, log))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([link, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not link.done():
            link.cancel()
            return
        reason = link.result()
        if status.connects and plan.enrol_token:
            plan = plan._replace(enrol_token=None, enrolment=plan.enrolment._replace(enrolled=True))
        if _was_healthy(status):
            backoff.reset()
        delay = backoff.next()
        status.failed(reason)
        save()
        log(f"{reason}; retrying in {delay:.1f}s")
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except asyncio.TimeoutError:
            pass


async def _connect_once(plan: Plan, status: st.AgentStatus, save: Callable[[], None],
                        log: Callable[[str], None]) -> str:
    """One connection's life; returns why it ended. Refused propagates (retrying cannot fix it)."""
    def changed() -> None:
        save()
        if status.state == "connected" and status.last_heartbeat_at is None:
            if plan.enrol_token:  # the hub accepted the token and our key: never offer the spent token again
                st.save_enrolment(plan.folder, plan.enrolment._replace(enrolled=True))
            log(f"connected to {plan.enrolment.hub.display()} as {plan.enrolment.agent}")

    status.last_heartbeat_at = None
    try:
        reason = await control(plan, status, changed, log)
    except Refused:
        raise
    except BridgeError as e:
        return e.message
    except (OSError, asyncio.TimeoutError) as e:
        return f"cannot reach hub {plan.enrolment.hub.display()}: {getattr(e, 'strerror', None) or e or 'timed out'}"
    except Exception as e:  # websockets' ConnectionClosed/InvalidHandshake/InvalidURI/ProxyError: all "the link failed"
        return f"link to hub {plan.enrolment.hub.display()} failed: {e or type(e).__name__}"
    return reason


def _was_healthy(status: st.AgentStatus) -> bool:
    import time

    return status.connected_since is not None and time.time() - status.connected_since >= HEALTHY_AFTER


def _refuse_second_instance(folder: Path) -> None:
    running = st.load_status(folder)
    if running and running.pid != os.getpid() and running.state != "stopped" and pid_alive(running.pid):
        raise BridgeError(f"an agent is already running here (pid {running.pid})",
                          hint="`bridge agent status` shows it; stop it first")


def status(state: Path | None) -> dict | None:
    """The running (or last) agent's status, `running` telling whether its process is alive."""
    current = st.load_status(st.agent_dir(state))
    if current is None:
        return None
    import dataclasses

    running = current.state != "stopped" and pid_alive(current.pid)
    return {**dataclasses.asdict(current), "running": running, "state": current.state if running else "stopped"}


def unit_text(options: UpOptions, user: str | None, python: Path | None = None) -> str:
    """A sandboxed unit that runs `bridge agent up` (already enrolled: no token in the unit) at boot.

    The agent only dials the hub and the local sshd over TCP and writes its state dir: no capability,
    nothing else writable. Raises BridgeError when `user` cannot run `python` with bridge.
    """
    folder = st.agent_dir(options.state).resolve()
    st.require_enrolment(folder)
    account, interpreter = user or getpass.getuser(), python or Path(sys.executable)
    systemd.check_runnable(account, interpreter, "bridge agent install")
    argv = [str(interpreter), "-m", "bridge", "agent", "up", "--state", str(folder), "--ssh", options.ssh,
            "--ping", f"{options.ping_interval:g}", *(["--ssh-user", options.ssh_user] if options.ssh_user else []),
            *[f"--workspace={name}={path}" for name, path in options.workspaces]]
    return systemd.render_unit(description="bridge agent (dials the hub)", argv=argv, user=account,
                               sandbox=systemd.hardening([folder]))


def install(options: UpOptions, user: str | None, path: Path | None, python: Path | None = None) -> Path:
    """Write the agent's unit (default /etc/systemd/system/bridge-agent.service), giving its state dir to
    `user`; raises BridgeError when that cannot be done or `user` cannot run `python`."""
    account = user or getpass.getuser()
    text = unit_text(options, account, python)
    _give(st.agent_dir(options.state).resolve(), account)
    return systemd.install(text, UNIT_NAME, path, "bridge agent install")


def _give(folder: Path, user: str) -> None:
    """chown -R the enrolment folder to the unit's account (enrolled as root, run as `user`); only root can."""
    import pwd

    account = pwd.getpwnam(user)
    if os.geteuid() != 0 or folder.stat().st_uid == account.pw_uid:
        return
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, account.pw_uid, account.pw_gid)
