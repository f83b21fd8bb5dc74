"""systemd units for bridge's long-running processes (tunnel, hub, agent): start at boot, restart always."""
from __future__ import annotations

import os
import pwd
import shlex
import subprocess
from pathlib import Path
from typing import Sequence

from bridge.errors import BridgeError

UNIT_DIR = Path("/etc/systemd/system")
PRIVATE_TMP = (Path("/tmp"), Path("/var/tmp"))  # hardening()'s PrivateTmp= gives the unit its own, empty


def render_unit(*, description: str, argv: list[str], user: str, workdir: Path | None = None,
                sandbox: Sequence[str] = ()) -> str:
    """The unit text: a system unit (multi-user.target) run as `user`, so it starts at boot without a login.

    `sandbox` adds [Service] lines that confine it, e.g. `hardening()`'s.
    """
    return "\n".join([
        "[Unit]",
        f"Description={description}",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"User={user}",
        *([f"WorkingDirectory={workdir}"] if workdir else []),
        f"ExecStart={shlex.join(argv)}",
        # bridge reconnects by itself; Restart= only covers a crash of the process or a bad config
        "Restart=always",
        "RestartSec=5",
        "KillSignal=SIGTERM",
        *sandbox,
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def hardening(writable: Sequence[Path] = (), capabilities: Sequence[str] = ()) -> list[str]:
    """Sandbox lines for a process that dials out or listens and reads its key and config: the system and every
    home read-only except `writable` (which must exist), no privileges to gain and no capabilities but
    `capabilities` (e.g. CAP_NET_BIND_SERVICE for a port below 1024, granted even to a non-root User=),
    no devices, IPv4/IPv6/Unix sockets only, and the system calls of an ordinary service.

    No PrivateUsers=: systemd then needs a user namespace, which containers and some hosts refuse
    (the unit fails at start, 217/USER), for 0.2 of systemd-analyze's exposure score."""
    granted = " ".join(capabilities)
    return [
        "NoNewPrivileges=yes", f"CapabilityBoundingSet={granted}", f"AmbientCapabilities={granted}",
        "ProtectSystem=strict", "ProtectHome=read-only", *[f"ReadWritePaths={path}" for path in writable],
        "PrivateTmp=yes", "PrivateDevices=yes", "DevicePolicy=closed", "PrivateMounts=yes",
        "ProtectKernelTunables=yes", "ProtectKernelModules=yes", "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes", "ProtectClock=yes", "ProtectHostname=yes", "ProtectProc=invisible",
        "ProcSubset=pid", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "RestrictNamespaces=yes",
        "RestrictRealtime=yes", "RestrictSUIDSGID=yes", "LockPersonality=yes", "MemoryDenyWriteExecute=yes",
        "RemoveIPC=yes", "KeyringMode=private", "UMask=0077", "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service", "SystemCallFilter=~@privileged @resources",
        "SystemCallErrorNumber=EPERM",
    ]


def check_runnable(user: str, python: Path, command: str) -> None:
    """Raise BridgeError unless `user` can start `python` and import bridge with it, as the unit will.

    Tried for real (as `user` when we are root); skipped when we are another non-root user, who
    could not run it as `user` anyway. `command` (e.g. `bridge tunnel install`) goes in the hint.
    """
    hint = (f"install bridge where {user} can read it (e.g. `python3 -m venv /opt/bridge && /opt/bridge/bin/pip "
            f"install bridge`), then `{command} --user {user} --python /opt/bridge/bin/python3`")
    if any(python.absolute().parent.resolve().is_relative_to(folder) for folder in PRIVATE_TMP):
        raise BridgeError(f"{python} is under /tmp or /var/tmp, which the unit sees empty (PrivateTmp=)", hint=hint)
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise BridgeError(f"no account `{user}` on this machine",
                          hint=f"create it, or `{command} --user NAME`") from None
    if os.geteuid() != 0 and account.pw_uid != os.geteuid():
        return
    other = account.pw_uid != os.geteuid()
    try:
        proc = subprocess.run([str(python), "-c", "import bridge.cli"], capture_output=True, text=True, cwd="/",
                              env={"PATH": "/usr/bin:/bin", "HOME": account.pw_dir}, timeout=60,
                              user=account.pw_uid if other else None, group=account.pw_gid if other else None,
                              extra_groups=os.getgrouplist(user, account.pw_gid) if other else None)
        why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1] if proc.returncode else ""
    except (OSError, subprocess.SubprocessError) as e:  # not executable, or hung past the timeout
        why = getattr(e, "strerror", None) or str(e)
    if why:
        raise BridgeError(f"{user} cannot run bridge with {python}: {why}", hint=hint)


def unit_state_dir(user: str) -> Path:
    """Bridge's state dir for a unit running as `user` (systemd sets HOME, not XDG_STATE_HOME)."""
    return Path(pwd.getpwnam(user).pw_dir) / ".local" / "state" / "bridge"


def make_owned(folder: Path, user: str) -> None:
    """mkdir -p `folder`, giving every folder made here to `user` (a sandboxed unit cannot make it itself)."""
    account = pwd.getpwnam(user)
    missing = [p for p in [folder, *folder.parents] if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for made in missing:
        os.chown(made, account.pw_uid, account.pw_gid)


def install(text: str, name: str, path: Path | None, command: str) -> Path:
    """Write the unit (0644, as systemd expects) to `path`, default /etc/systemd/system/NAME.

    Raises BridgeError naming `command` (e.g. `bridge hub install`) when the folder is not writable.
    """
    target = path or UNIT_DIR / name
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(0o644)
    except PermissionError as e:
        raise BridgeError(f"cannot write {target}: permission denied",
                          hint=f"run it with sudo, or `{command} --print` and copy it yourself") from e
    return target
