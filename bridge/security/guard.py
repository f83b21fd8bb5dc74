"""`bridge guard --as USER`: the forced command of restricted keys; decides, audits, then runs.

sshd runs the guard instead of whatever the client asked for and passes the request in
`SSH_ORIGINAL_COMMAND` (absent for an interactive login). The guard maps it to an action:

* `git-receive-pack PATH` / `git-upload-pack PATH` (exactly two words): push / pull, only
  into the workspaces granted to the key and by the policy; run as an argv, never a shell;
* any other command: exec, checked program by program, then run by `sh -c` (recorded on a
  PTY when the client asked for one; inside the sandbox for `sandbox_only` roles);
* no command: an interactive login shell on a recorded PTY, for roles with `shell`.

The guard configures itself only from its argv (the root-owned authorized_keys line `keys
add` wrote: `--policy`, `--audit`, `--workspace`, ...) and root-owned defaults, never from
the session's environment, which the client can set through sshd's AcceptEnv. Whatever it
starts is confined (bridge.security.confine): no_new_privs for every role without `sudo`,
the policy's `run_as` account on a root login, an allow-listed environment.

A refusal prints one line on stderr and exits 126; every session ends with one audit line.
"""
from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from bridge.errors import ConfigError, ExitCode
from bridge.security import audit, files, heads
from bridge.security.confine import Confinement, account_by_name, child_env, current_account, editable_by_others
from bridge.security.policy import GIT_ACTIONS, SYSTEM_POLICY, Decision, Grant, check_command, check_permission, \
    check_repo, load_policy, resolve_repo
from bridge.security.recording import Recorder, new_recording_path
from bridge.security.secrets import secret_values
from bridge.security.shellparse import UnparsableCommand, simple_commands
from bridge.server.scripts import timed_script
from bridge.security.session import run_in_pty, run_plain, window_size

SANDBOX_IMAGE = "python:3.12-slim"
CANNOT_RUN = 127


@dataclass(frozen=True)
class GuardSettings:
    """The guard's settings, from its argv in the root-owned key line (`bridge keys add` writes it)."""

    user: str
    key_role: str | None = None
    policy: str | None = None
    audit: str | None = None
    workspaces: tuple[str, ...] = ()
    record_input: bool = False
    sandbox_image: str = SANDBOX_IMAGE

    def audit_log(self) -> Path:
        """`--audit`, else the root-owned /var/log/bridge/audit.jsonl."""
        return Path(self.audit) if self.audit else audit.SERVER_LOG

    def argv(self) -> list[str]:
        """`guard --as USER ...`: these settings as the key line passes them back to `bridge guard`."""
        argv = ["guard", "--as", self.user]
        argv += ["--role", self.key_role] if self.key_role else []
        argv += ["--policy", self.policy] if self.policy else []
        argv += ["--audit", self.audit] if self.audit else []
        for workspace in self.workspaces:
            argv += ["--workspace", workspace]
        argv += ["--record-input"] if self.record_input else []
        argv += ["--sandbox-image", self.sandbox_image] if self.sandbox_image != SANDBOX_IMAGE else []
        return argv

    @classmethod
    def from_argv(cls, argv: list[str]) -> GuardSettings:
        """The inverse of argv(): the settings of a key line's `guard --as USER ...` words; raises ValueError."""
        if argv[:1] != ["guard"]:
            raise ValueError("not a guard command")
        values: dict[str, list[str]] = {}
        words = iter(argv[1:])
        for word in words:
            values.setdefault(word, []).append("1" if word == "--record-input" else next(words))
        unknown = set(values) - set(_OPTIONS)
        if unknown or "--as" not in values:
            raise ValueError(f"unexpected guard options {sorted(unknown) or ['(no --as)']}")
        first = {name: found[-1] for name, found in values.items()}
        return cls(first["--as"], first.get("--role"), first.get("--policy"), first.get("--audit"),
                   tuple(values.get("--workspace", ())), "--record-input" in values,
                   first.get("--sandbox-image", SANDBOX_IMAGE))


_OPTIONS = ("--as", "--role", "--policy", "--audit", "--workspace", "--record-input", "--sandbox-image")


@dataclass(frozen=True)
class Request:
    """What sshd handed the guard (the command, a terminal or not) and the settings of its key line."""

    settings: GuardSettings
    command: str | None
    tty: bool = False
    audit_log: Path = field(default=audit.SERVER_LOG)

    @property
    def user(self) -> str:
        return self.settings.user


@dataclass(frozen=True)
class Plan:
    """The decision and, when allowed, how to run it."""

    action: str
    decision: Decision
    argv: list[str] = field(default_factory=list)
    workspace: str | None = None
    record: bool = False
    roots: list[str] | None = None  # files: the folders an sftp session is confined to (None: not confined)


def request_from_env(settings: GuardSettings, stdin_fd: int = 0) -> Request:
    """The Request sshd describes: its SSH_ORIGINAL_COMMAND (the client's own words) and our stdin."""
    return Request(settings, os.environ.get("SSH_ORIGINAL_COMMAND"), os.isatty(stdin_fd), settings.audit_log())


def plan(grant: Grant | None, req: Request, account: Confinement | None = None) -> Plan:
    """Map the request to an action and decide it; paths and the shell are those of the account it runs as."""
    who = account.account if account is not None else current_account()
    if req.command is None:
        return Plan("shell", check_permission(grant, "shell"), [who.shell, "-l"], record=True)
    if files.is_request(req.command):
        decision, roots = files.check(grant)
        return Plan("files", decision, files.argv(roots, who.home), roots[0] if roots else None, roots=roots)
    words = _split(req.command)
    if tuple(words or ()) == heads.HEAD_COMMAND:
        return Plan("audit-head", check_permission(grant, "audit"))
    if words and len(words) == 2 and words[0] in GIT_ACTIONS:
        repo = resolve_repo(words[1], who.home)
        return Plan(GIT_ACTIONS[words[0]], check_repo(grant, words[0], words[1], who.home), [words[0], repo], repo)
    decision = check_command(grant, req.command)
    for script in _timed_scripts(req.command) if decision.allowed else ():
        decision = check_command(grant, script)
        if not decision.allowed:
            break
    if decision.allowed and grant is not None and grant.role.may("sandbox_only"):
        return Plan("exec", decision, sandbox_argv(req.command, req.settings.sandbox_image))
    return Plan("exec", decision, ["sh", "-c", req.command], record=req.tty)


def _timed_scripts(command: str) -> list[str]:
    """The scripts bridge's timeout wrapper in `command` would run (`bridge exec --timeout`): checked
    as commands too, so a sudo inside one is refused here, as it is without a timeout."""
    try:
        commands = simple_commands(command)
    except UnparsableCommand:
        return []
    return [script for cmd in commands if (script := timed_script(cmd.argv)) is not None]


def _split(command: str) -> list[str] | None:
    """POSIX words of the command, None when its quoting is broken."""
    try:
        return shlex.split(command)
    except ValueError:
        return None


def sandbox_argv(command: str, image: str = SANDBOX_IMAGE) -> list[str]:
    """The docker command that runs `command` locked down: no network, read-only, no capabilities."""
    return ["docker", "run", "--rm", "-i", "--network", "none", "--read-only", "--tmpfs", "/tmp:rw,size=64m",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--pids-limit", "256",
            "--memory", "512m", "--user", "65534:65534", image, "sh", "-c", command]


def confinement_for(grant: Grant | None) -> Confinement | Decision:
    """How the grant's commands run here, or the refusal when they cannot run without root.

    A role with `sudo` runs as the login account, unconfined. Any other role gets no_new_privs,
    and on a root login becomes its `run_as` account: never root.
    """
    login = current_account()
    env = os.environ
    if grant is None or grant.role.may("sudo"):
        return Confinement(login, False, grant is None, child_env(env, login))
    allowed = grant.role.env
    if login.uid != 0:
        return Confinement(login, False, True, child_env(env, login, allowed))
    role = grant.role.name
    if not grant.run_as:
        return Decision(False, f"{role}.no-run-as",
                        f"role {role} lacks sudo and this login is root; set run_as: ACCOUNT for it in the policy")
    target = account_by_name(grant.run_as)
    if target is None or target.uid == 0:
        return Decision(False, f"{role}.run-as", f"run_as account {grant.run_as!r} is missing or is root")
    return Confinement(target, True, True, child_env(env, target, allowed))


def run_guard(settings: GuardSettings, stdin_fd: int = 0) -> int:
    """Decide the SSH request, audit it, and run it confined only when allowed; returns the exit code."""
    req = request_from_env(settings, stdin_fd)
    try:
        grant = _load_grant(settings)
    except ConfigError as e:
        return refuse(req, Plan("exec" if req.command else "shell", Decision(False, "policy-error", str(e))))
    confinement = confinement_for(grant)
    chosen = plan(grant, req, confinement if isinstance(confinement, Confinement) else None)
    if not chosen.decision.allowed:
        return refuse(req, chosen)
    if isinstance(confinement, Decision):
        return refuse(req, replace(chosen, decision=confinement))
    return execute(req, chosen, confinement, stdin_fd)


def _load_grant(settings: GuardSettings) -> Grant | None:
    """The key's grant under its policy, which only root may edit; raises ConfigError."""
    path = Path(settings.policy) if settings.policy else SYSTEM_POLICY
    try:
        found = editable_by_others(path)
    except OSError as e:
        raise ConfigError(f"{path}: cannot check the policy: {e.strerror or e}") from e
    if found:
        raise ConfigError(f"{path}: not trusted, {found[0]} is writable by {found[1]}")
    return load_policy(settings.policy).grant(settings.user, settings.key_role, settings.workspaces)


def audit_connection(settings: GuardSettings) -> None:
    """The audit line of a connection that opens no session (`ssh -N`): sshd lets its key forward ports."""
    try:
        grant = _load_grant(settings)
    except ConfigError:
        grant = None
    role = grant.role.name if grant is not None else settings.key_role or "unknown"
    req = Request(settings, None, False, settings.audit_log())
    _audit(req, Plan("connect", Decision(True, f"{role}.forward", "port forwarding allowed by the key line")),
           exit_code=0, duration=0.0)


def refuse(req: Request, chosen: Plan) -> int:
    """Audit the refusal and say why in one line on stderr; exit code 126."""
    _audit(req, chosen, exit_code=int(ExitCode.POLICY), duration=0.0)
    reason = f": {chosen.decision.reason}" if chosen.decision.reason else ""
    _say(f"bridge: refused by policy (rule {chosen.decision.rule}){reason}")
    return int(ExitCode.POLICY)


def _say(line: str) -> None:
    """One line on stderr, if the client is still there to read it."""
    try:
        sys.stderr.write(line.replace("\n", " ") + "\n")
        sys.stderr.flush()
    except OSError:
        pass


def execute(req: Request, chosen: Plan, confinement: Confinement, stdin_fd: int) -> int:
    """Run the allowed plan confined (recorded on a PTY when it is a session) and audit how it ended.

    The audit line is written whatever happened to the client or the child: exactly one per session.
    No record, no run: when the audit writer cannot take the opening record, the request is refused (126).
    """
    try:
        pending = audit.writer(req.settings.audit).begin(_entry(req, chosen, exit_code=None, duration=0.0))
    except audit.AuditError as e:
        _say(f"bridge: refused: {e.message}; {e.hint}")
        return int(ExitCode.POLICY)
    if chosen.action == "audit-head":
        head = _audit(req, chosen, exit_code=0, duration=0.0, pending=pending)
        print(head or "", flush=True)
        return 0 if head else 1
    start = time.monotonic()
    extra: dict[str, str] = {}
    try:
        if chosen.record:
            code, extra = _run_recorded(req, chosen, confinement, stdin_fd)
        elif chosen.action == "files":
            audit_op = lambda op: _audit(req, chosen, exit_code=None, duration=0.0, **op) is not None  # noqa: E731
            code = files.serve(chosen.argv, chosen.roots, audit_op, stdin_fd)
        else:
            code = run_plain(chosen.argv, confinement)
    except OSError as e:
        _say(f"bridge: cannot run {chosen.argv[0]}: {e.strerror or e}")
        code = CANNOT_RUN
    _audit(req, chosen, exit_code=code, duration=time.monotonic() - start, pending=pending, **extra)
    return code


def _run_recorded(req: Request, chosen: Plan, confinement: Confinement, stdin_fd: int) -> tuple[int, dict[str, str]]:
    """Run on a PTY while writing an asciicast next to the server's audit log."""
    folder = req.audit_log.parent / "recordings"
    cols, rows = window_size(stdin_fd)
    recorder = Recorder(new_recording_path(folder, req.user), width=cols, height=rows,
                        command=req.command, title=f"{req.user}@{os.uname().nodename}",
                        record_input=req.settings.record_input, secrets=secret_values(os.environ))
    with recorder:
        code = run_in_pty(chosen.argv, recorder, confinement, stdin_fd)
    return code, {"recording": str(recorder.path), "recording_sha256": recorder.sha256 or ""}


def _audit(req: Request, chosen: Plan, *, exit_code: int | None, duration: float, **extra: object) -> str | None:
    """One server audit line, through the audit writer (or appended, for root); returns the new head.

    A record that cannot be written is said on stderr and gives None; the exit code stays the command's.
    In `extra`: `pending` finishes the record `execute` opened.
    """
    pending = extra.pop("pending", None)
    entry = _entry(req, chosen, exit_code=exit_code, duration=duration, **extra)
    try:
        if isinstance(pending, audit.Pending):
            return pending.finish(entry)
        return audit.writer(req.settings.audit).write(entry)
    except audit.AuditError as e:
        _say(f"bridge: warning: audit record not written: {e.message}")
        return None


def _entry(req: Request, chosen: Plan, *, exit_code: int | None, duration: float, **extra: object) -> dict:
    """The audit fields of this request and its decision."""
    return {**audit.build_entry(
        action=chosen.action, command=req.command, exit_code=exit_code, duration=duration,
        decision="allowed" if chosen.decision.allowed else "denied", rule=chosen.decision.rule,
        workspace=chosen.workspace, user=req.user, secrets=tuple(secret_values(os.environ)),
        via="guard"), **extra}
