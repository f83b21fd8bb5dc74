"""`bridge guard --as USER`: the forced command of restricted keys; decides, audits, then runs.

sshd runs the guard instead of whatever the client asked for and passes the request in
`SSH_ORIGINAL_COMMAND` (absent for an interactive login). The guard maps it to an action:

* `git-receive-pack PATH` / `git-upload-pack PATH` (exactly two words): push / pull, only
  into the workspaces the user may use; run as an argv, never through a shell;
* any other command: exec, checked program by program, then run by `sh -c` (recorded on a
  PTY when the client asked for one; inside the sandbox for `sandbox_only` roles);
* no command: an interactive login shell on a recorded PTY, for roles with `shell`.

A refusal prints one line on stderr and exits 126; every decision is one audit line.
"""
from __future__ import annotations

import os
import pwd
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bridge.errors import ConfigError, ExitCode
from bridge.security import audit, files, heads
from bridge.security.policy import GIT_ACTIONS, Decision, Grant, check_command, check_permission, check_repo, \
    load_policy, resolve_repo
from bridge.security.recording import Recorder, new_recording_path
from bridge.security.secrets import secret_values
from bridge.security.session import run_in_pty, run_plain, window_size

SANDBOX_IMAGE = "python:3.12-slim"


@dataclass(frozen=True)
class Request:
    """What sshd handed the guard: who (from the key line), what, and where home is."""

    user: str
    key_role: str | None
    command: str | None
    home: str
    tty: bool = False


@dataclass(frozen=True)
class Plan:
    """The decision and, when allowed, how to run it."""

    action: str
    decision: Decision
    argv: list[str] = field(default_factory=list)
    workspace: str | None = None
    record: bool = False
    roots: list[str] | None = None  # files: the folders an sftp session is confined to (None: not confined)


def request_from_env(user: str, key_role: str | None, stdin_fd: int = 0) -> Request:
    """The Request sshd describes through the environment."""
    command = os.environ.get("SSH_ORIGINAL_COMMAND")
    return Request(user, key_role, command, str(Path.home()), os.isatty(stdin_fd))


def plan(grant: Grant | None, req: Request) -> Plan:
    """Map the request to an action and decide it."""
    if req.command is None:
        return Plan("shell", check_permission(grant, "shell"), [login_shell(), "-l"], record=True)
    if files.is_request(req.command):
        decision, roots = files.check(grant)
        return Plan("files", decision, files.argv(roots, req.home), roots[0] if roots else None, roots=roots)
    words = _split(req.command)
    if tuple(words or ()) == heads.HEAD_COMMAND:
        return Plan("audit-head", check_permission(grant, "audit"))
    if words and len(words) == 2 and words[0] in GIT_ACTIONS:
        repo = resolve_repo(words[1], req.home)
        return Plan(GIT_ACTIONS[words[0]], check_repo(grant, words[0], words[1], req.home), [words[0], repo], repo)
    decision = check_command(grant, req.command)
    if decision.allowed and grant is not None and grant.role.may("sandbox_only"):
        return Plan("exec", decision, sandbox_argv(req.command))
    return Plan("exec", decision, ["sh", "-c", req.command], record=req.tty)


def _split(command: str) -> list[str] | None:
    """POSIX words of the command, None when its quoting is broken."""
    try:
        return shlex.split(command)
    except ValueError:
        return None


def login_shell() -> str:
    """The account's login shell, /bin/sh when it has none."""
    try:
        return pwd.getpwuid(os.getuid()).pw_shell or "/bin/sh"
    except KeyError:
        return "/bin/sh"


def sandbox_argv(command: str, image: str | None = None) -> list[str]:
    """The docker command that runs `command` locked down: no network, read-only, no capabilities."""
    return ["docker", "run", "--rm", "-i", "--network", "none", "--read-only", "--tmpfs", "/tmp:rw,size=64m",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--pids-limit", "256",
            "--memory", "512m", "--user", "65534:65534",
            image or os.environ.get("BRIDGE_SANDBOX_IMAGE", SANDBOX_IMAGE), "sh", "-c", command]


def run_guard(user: str, key_role: str | None = None, stdin_fd: int = 0) -> int:
    """Decide the SSH request, audit it, and run it only when allowed; returns the exit code."""
    req = request_from_env(user, key_role, stdin_fd)
    try:
        grant = load_policy().grant(user, key_role)
    except ConfigError as e:
        return refuse(req, Plan("exec" if req.command else "shell", Decision(False, "policy-error", str(e))))
    chosen = plan(grant, req)
    if not chosen.decision.allowed:
        return refuse(req, chosen)
    return execute(req, chosen, stdin_fd)


def refuse(req: Request, chosen: Plan) -> int:
    """Audit the refusal and say why in one line on stderr; exit code 126."""
    _audit(req, chosen, exit_code=int(ExitCode.POLICY), duration=0.0)
    reason = f": {chosen.decision.reason}" if chosen.decision.reason else ""
    line = f"bridge: refused by policy (rule {chosen.decision.rule}){reason}".replace("\n", " ")
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    return int(ExitCode.POLICY)


def execute(req: Request, chosen: Plan, stdin_fd: int) -> int:
    """Open its audit record, run the allowed plan (recorded on a PTY when it is a session), finish the record.

    No record, no run: when the audit writer cannot take it, the request is refused (126).
    """
    try:
        pending = audit.writer(audit_destination()).begin(_entry(req, chosen, exit_code=None, duration=0.0))
    except audit.AuditError as e:
        sys.stderr.write(f"bridge: refused: {e.message}; {e.hint}\n")
        return int(ExitCode.POLICY)
    start = time.monotonic()
    extra: dict[str, str] = {}
    if chosen.record:
        code, extra = _run_recorded(req, chosen, stdin_fd)
    elif chosen.action == "files":
        audit_op = lambda op: _audit(req, chosen, exit_code=None, duration=0.0, **op) is not None  # noqa: E731
        code = files.serve(chosen.argv, chosen.roots, audit_op, stdin_fd)
    elif chosen.action == "audit-head":
        head = _audit(req, chosen, exit_code=0, duration=0.0, pending=pending)
        print(head or "", flush=True)
        return 0 if head else 1
    else:
        code = run_plain(chosen.argv)
    _audit(req, chosen, exit_code=code, duration=time.monotonic() - start, pending=pending, **extra)
    return code


def _run_recorded(req: Request, chosen: Plan, stdin_fd: int) -> tuple[int, dict[str, str]]:
    """Run on a PTY while writing an asciicast next to the server's audit log."""
    folder = audit.server_log_path().parent / "recordings"
    cols, rows = window_size(stdin_fd)
    recorder = Recorder(new_recording_path(folder, req.user), width=cols, height=rows,
                        command=req.command, title=f"{req.user}@{os.uname().nodename}",
                        record_input=os.environ.get("BRIDGE_RECORD_INPUT") == "1",
                        secrets=secret_values(os.environ))
    with recorder:
        code = run_in_pty(chosen.argv, recorder, stdin_fd)
    return code, {"recording": str(recorder.path), "recording_sha256": recorder.sha256 or ""}


def audit_destination() -> str | None:
    """Where the guard's records go (audit.writer): `$BRIDGE_AUDIT_LOG` until the guard's argv names it."""
    return os.environ.get("BRIDGE_AUDIT_LOG")


def _audit(req: Request, chosen: Plan, *, exit_code: int | None, duration: float, **extra: object) -> str | None:
    """One server audit line, through the audit writer (or appended, for root); returns the new head.

    A record that cannot be written is said on stderr and gives None; the exit code stays the command's.
    In `extra`: `pending` finishes the record `execute` opened; `destination` says where records go.
    """
    pending = extra.pop("pending", None)
    destination = extra.pop("destination", None) or audit_destination()
    entry = _entry(req, chosen, exit_code=exit_code, duration=duration, **extra)
    try:
        if isinstance(pending, audit.Pending):
            return pending.finish(entry)
        return audit.writer(destination and str(destination)).write(entry)
    except audit.AuditError as e:
        sys.stderr.write(f"bridge: warning: audit record not written: {e.message}\n")
        return None


def _entry(req: Request, chosen: Plan, *, exit_code: int | None, duration: float, **extra: object) -> dict:
    """The audit fields of this request and its decision."""
    return audit.build_entry(
        action=chosen.action, command=req.command, exit_code=exit_code, duration=duration,
        decision="allowed" if chosen.decision.allowed else "denied", rule=chosen.decision.rule,
        workspace=chosen.workspace, user=req.user, secrets=tuple(secret_values(os.environ)),
        via="guard", **extra)
