"""`bridge keys`, `bridge guard`, `bridge audit`, `bridge replay`: parse, call bridge.security, render."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from bridge import ui


def register(app: typer.Typer) -> None:
    """Add the security commands to the app."""
    keys_app = typer.Typer(help="Grant SSH keys a role through restricted authorized_keys lines.", no_args_is_help=True)
    keys_app.command("add", epilog="Example: bridge keys add alice --role operator --key ~alice/id_ed25519.pub "
                                    "--workspace /srv/app --file /etc/bridge/authorized_keys/deploy")(keys_add)
    keys_app.command("list", epilog="Example: bridge keys list --json")(keys_list)
    keys_app.command("remove", epilog="Example: bridge keys remove alice")(keys_remove)
    keys_app.command("pam-session", epilog="Example (/etc/pam.d/sshd): session optional pam_exec.so /opt/bridge/bin/python3 "
                                           "-I -S /opt/bridge/bin/bridge keys pam-session --file "
                                           "/etc/bridge/authorized_keys/%u")(keys_pam_session)
    app.add_typer(keys_app, name="keys")
    app.command("guard", epilog="Example (authorized_keys, as `keys add` writes it): command=\"/opt/bridge/bin/python3 -I -S "
                                 "/opt/bridge/bin/bridge guard --as alice --role operator\",restrict ssh-ed25519 AAAA...")(guard)
    audit_app = typer.Typer(help="Read and verify the tamper-evident audit log.", no_args_is_help=True)
    audit_app.command("show", epilog="Example: bridge audit show --user alice --since 2h")(audit_show)
    audit_app.command("verify", epilog="Example: bridge audit verify --expect-head @prod")(audit_verify)
    audit_app.command("head", epilog="Example: bridge audit head prod   (records prod's head in your log)")(audit_head)
    audit_app.command("serve", epilog="Example (as root): bridge audit serve --socket /run/bridge/audit.sock")(audit_serve)
    audit_app.command("install", epilog="Example (as root): bridge audit install && systemctl enable --now bridge-audit")(audit_install)
    app.add_typer(audit_app, name="audit")
    app.command("replay", epilog="Example: bridge replay ~/.local/state/bridge/recordings/x.cast --speed 2")(replay)


FileOpt = Annotated[Optional[Path], typer.Option("--file", help="authorized_keys file (default ~/.ssh/authorized_keys).")]


def keys_add(
    user: Annotated[str, typer.Argument(help="Name the guard will know this key by.")],
    role: Annotated[str, typer.Option("--role", help="Role from the policy: viewer, operator, admin, ...")],
    key: Annotated[str, typer.Option("--key", help="The public key: a path (~/.ssh/id_ed25519.pub), @path, or its text.")],
    file: FileOpt = None,
    bridge_path: Annotated[Optional[str], typer.Option("--bridge", help="Absolute path of bridge on this server.")] = None,
    workspace: Annotated[Optional[list[str]], typer.Option(
        "--workspace", help="A workspace (absolute path) git may use with this key; repeatable. None: no repository.")] = None,
    policy_file: Annotated[Optional[Path], typer.Option(
        "--policy", help="Policy file the guard reads (default /etc/bridge/policy.yaml).")] = None,
    audit_dest: Annotated[Optional[str], typer.Option(
        "--audit", help="Audit log the guard writes (default /var/log/bridge/audit.jsonl).")] = None,
    record_input: Annotated[bool, typer.Option("--record-input", help="Record keystrokes in session recordings too.")] = False,
    sandbox_image: Annotated[Optional[str], typer.Option(
        "--sandbox-image", help="Image for sandbox_only roles (default python:3.12-slim).")] = None,
) -> int:
    """Grant a public key a role: write a restricted line that forces `bridge guard --as USER` with these settings."""
    import os

    from bridge.errors import UsageError
    from bridge.security import keys, policy
    from bridge.security.guard import SANDBOX_IMAGE, GuardSettings

    policy_path = _absolute("--policy", str(policy_file)) if policy_file else None
    rules = policy.load_policy(policy_path)
    if role not in rules.roles:
        raise UsageError(f"unknown role {role!r}", hint=f"roles: {', '.join(sorted(rules.roles))}")
    if bridge_path is not None:
        _absolute("--bridge", bridge_path)
    spaces = tuple(os.path.normpath(_absolute("--workspace", w)) for w in workspace or ())
    settings = GuardSettings(user, role, policy_path, _absolute("--audit", audit_dest) if audit_dest else None, spaces,
                             record_input, sandbox_image or SANDBOX_IMAGE)
    grant = rules.grant(user, role, spaces)
    path = file or keys.default_file()
    entry = keys.add_key(path, settings, rules.roles[role], keys.read_key_arg(key), grant.run_as if grant else None,
                         [bridge_path] if bridge_path else None)
    ui.say(f"granted {entry.key.fingerprint} to {user} as {role} in {path}")
    return 0


def _absolute(option: str, value: str) -> str:
    """`value` when it is an absolute path; raises UsageError naming the option."""
    from bridge.errors import UsageError

    if not Path(value).is_absolute():
        raise UsageError(f"{option} {value!r} must be an absolute path", hint=f"{option} {Path(value).absolute()}")
    return value


def keys_list(file: FileOpt = None, json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> int:
    """List the keys bridge manages in an authorized_keys file."""
    from bridge.security import keys

    entries = keys.list_keys(file or keys.default_file())
    rows = [{"user": e.user, "role": e.role, "type": e.key.kind, "fingerprint": e.key.fingerprint,
             "comment": e.key.comment, "line": e.line} for e in entries]
    if json:
        ui.print_json(rows)
    else:
        ui.table(None, ["user", "role", "type", "fingerprint", "comment"],
                 [[r["user"], r["role"] or "-", r["type"], r["fingerprint"], r["comment"]] for r in rows])
    return 0


def keys_remove(
    user: Annotated[str, typer.Argument(help="User whose keys to remove.")],
    file: FileOpt = None,
    fingerprint: Annotated[Optional[str], typer.Option("--fingerprint", help="Remove only this key (SHA256:...).")] = None,
) -> int:
    """Remove a user's keys from an authorized_keys file."""
    from bridge.security import keys

    path = file or keys.default_file()
    for entry in keys.remove_key(path, user, fingerprint):
        ui.say(f"removed {entry.key.fingerprint} ({user}) from {path}")
    return 0


def keys_pam_session(
    file: Annotated[str, typer.Option("--file", help="sshd's AuthorizedKeysFile pattern (%u: the login account).")],
) -> int:
    """PAM session hook (pam_exec): one audit line for a connection whose key may forward ports (`ssh -N`).

    Install it as `session optional`, so a failure of the hook never blocks a login.
    """
    import os

    from bridge.security.connection import on_pam_session

    on_pam_session(file, os.environ)
    return 0


def guard(
    as_user: Annotated[str, typer.Option("--as", help="The user this key belongs to.")],
    role: Annotated[Optional[str], typer.Option("--role", help="Role granted on the key line (the policy's users map wins).")] = None,
    policy_file: Annotated[Optional[str], typer.Option("--policy", help="Policy file (default /etc/bridge/policy.yaml).")] = None,
    audit_dest: Annotated[Optional[str], typer.Option("--audit", help="Audit log (default /var/log/bridge/audit.jsonl).")] = None,
    workspace: Annotated[Optional[list[str]], typer.Option("--workspace", help="A workspace granted to the key; repeatable.")] = None,
    record_input: Annotated[bool, typer.Option("--record-input", help="Record keystrokes in session recordings.")] = False,
    sandbox_image: Annotated[Optional[str], typer.Option("--sandbox-image", help="Image for sandbox_only roles.")] = None,
) -> int:
    """Forced command for restricted keys: check SSH_ORIGINAL_COMMAND against the policy, audit, then run it confined.

    Every setting comes from these options (the root-owned key line), none from the environment.
    """
    from bridge.security.guard import SANDBOX_IMAGE, GuardSettings, run_guard

    return run_guard(GuardSettings(as_user, role, policy_file, audit_dest, tuple(workspace or ()), record_input,
                                   sandbox_image or SANDBOX_IMAGE))


def _log_path(file: Optional[Path], server: bool) -> Path:
    """The log to read: the given file, the server log, or the default (the server's for root, else yours)."""
    from bridge.security import audit

    if file is not None:
        return file
    return audit.SERVER_LOG if server else audit.reading_log_path()


LogArg = Annotated[Optional[Path], typer.Argument(
    help="Audit log (default: $BRIDGE_AUDIT_LOG; as root /var/log/bridge/audit.jsonl when it exists; else yours).")]


def audit_show(
    file: LogArg = None,
    user: Annotated[Optional[str], typer.Option("--user", help="Only this user.")] = None,
    action: Annotated[Optional[str], typer.Option("--action", help="Only this action (exec, push, shell, ...).")] = None,
    since: Annotated[Optional[str], typer.Option("--since", help="ISO time or age: 30m, 2h, 7d.")] = None,
    server: Annotated[bool, typer.Option("--server", help="Read the server log (/var/log/bridge).")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> int:
    """Show audit entries, filtered."""
    from bridge.security import audit

    when = audit.parse_since(since) if since else None
    entries = audit.select(audit.read_entries(_log_path(file, server)), user=user, action=action, since=when)
    if json:
        ui.print_json(entries, lines=True)
        return 0
    ui.table(None, ["time", "user", "source", "action", "decision", "exit", "command", "rule"],
             [[e.get("time", ""), e.get("user", ""), e.get("source") or "-", e.get("action", ""),
               e.get("decision", ""), _dash(e.get("exit_code")), e.get("command") or "-", e.get("rule") or "-"]
              for e in entries])
    return 0


def _dash(value: object) -> str:
    """A cell value, `-` for None."""
    return "-" if value is None else str(value)


def audit_verify(
    file: LogArg = None,
    head: Annotated[bool, typer.Option("--head", help="Print the last hash, to keep off the box.")] = False,
    expect_head: Annotated[Optional[str], typer.Option(
        "--expect-head", help="Fail unless a line has this hash (a head kept elsewhere: catches a cut tail); "
                              "@TARGET takes the last head `bridge audit head TARGET` recorded.")] = None,
    key: Annotated[Optional[Path], typer.Option("--key", help="HMAC key file (default: $BRIDGE_AUDIT_KEY; "
                                                               "/etc/bridge/audit.key for the server log).")] = None,
    server: Annotated[bool, typer.Option("--server", help="Verify the server log (/var/log/bridge).")] = False,
) -> int:
    """Check the hash chain in constant memory: exit 0 when intact, 1 naming the first broken line."""
    from bridge.security import audit, heads

    path = _log_path(file, server)
    result = audit.verify(path, audit.verify_key(path, key), heads.expected(expect_head))
    if not result.ok:
        ui.say(f"{path}:{result.bad_line}: broken: {result.reason}", err=True)
        return 1
    found = f", head of line {result.head_line} found" if result.head_line else ""
    ui.say(result.head if head else f"{path}: {result.lines} lines intact{found}")
    return 0


def audit_head(
    target: Annotated[Optional[str], typer.Argument(help="A remote or group: ask each server for its head "
                                                         "and record it in your log. None: this machine's log.")] = None,
    file: Annotated[Optional[Path], typer.Option("--file", help="With no TARGET: the log to read.")] = None,
) -> int:
    """Print the hash of the newest audit line; with TARGET, the servers' heads, kept in your own log."""
    from bridge.security import audit, heads

    if target is None:
        ui.say(audit.FileWriter(_log_path(file, False)).head())
        return 0
    for name, value in heads.fetch(target):
        ui.say(f"{name} {value}")
    return 0


SocketOpt = Annotated[Path, typer.Option("--socket", help="The writer's unix socket.")]
WriterLogOpt = Annotated[Path, typer.Option("--log", help="The log the writer appends to.")]
KeyOpt = Annotated[Path, typer.Option("--key", help="HMAC key file, root-only (used when it exists).")]


def audit_serve(
    socket: SocketOpt = Path("/run/bridge/audit.sock"),
    log: WriterLogOpt = Path("/var/log/bridge/audit.jsonl"),
    key: KeyOpt = Path("/etc/bridge/audit.key"),
) -> int:
    """Run the audit writer (as root): guards hand it their records; SO_PEERCRED names each sender."""
    from bridge.security import auditd

    ui.say(f"audit writer: {socket} -> {log}", err=True)
    auditd.serve(socket, log, key)
    return 0


def audit_install(
    socket: SocketOpt = Path("/run/bridge/audit.sock"),
    log: WriterLogOpt = Path("/var/log/bridge/audit.jsonl"),
    key: KeyOpt = Path("/etc/bridge/audit.key"),
    bridge_path: Annotated[Optional[str], typer.Option("--bridge", help="Absolute path of bridge.")] = None,
    print_only: Annotated[bool, typer.Option("--print", help="Only print the unit.")] = False,
) -> int:
    """Write the hardened systemd unit bridge-audit.service that runs the writer as root."""
    from bridge.errors import UsageError
    from bridge.security import auditd

    program = bridge_path or os.path.abspath(sys.argv[0])
    if not os.path.isabs(program):
        raise UsageError(f"--bridge {program!r} must be an absolute path")
    text = auditd.unit_text(program, socket, log, key)
    if print_only:
        sys.stdout.write(text)
        return 0
    ui.say(f"wrote {auditd.install(text)}; start it: systemctl daemon-reload && systemctl enable --now bridge-audit")
    return 0


def replay(
    file: Annotated[Path, typer.Argument(help="An asciicast v2 recording.")],
    speed: Annotated[float, typer.Option("--speed", help="Playback speed factor.")] = 1.0,
    max_idle: Annotated[Optional[float], typer.Option("--max-idle", help="Cap pauses at this many seconds.")] = None,
) -> int:
    """Play a recorded session in this terminal."""
    from bridge.security import recording

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    recording.play(file, write, speed=speed, max_idle=max_idle)
    return 0
