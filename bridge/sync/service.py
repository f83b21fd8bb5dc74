"""What `bridge push/pull/status/rollback` and `init` call: targets resolved, hosts run in parallel.

Each host's failure becomes its result (one bad host never hides the others); events stream
to the caller's `emit` from worker threads, tagged with the host.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bridge import targets
from bridge.fleet import fan_out
from bridge.config import Config, Remote
from bridge.errors import BridgeError, UsageError
from bridge.sync import gitlocal, wip
from bridge.sync.pull import PullResult
from bridge.sync.pull import pull as pull_one
from bridge.sync.push import PushPlan, PushResult, failure, push_git, push_server
from bridge.sync.report import Emit
from bridge.sync.status import RemoteStatus
from bridge.sync.status import status as status_one
from bridge.sync.target import Target


@dataclass(frozen=True)
class HostDone:
    """A host finished; `result` is its PushResult (or pull/status value)."""

    host: str
    result: object


@dataclass
class PushJob:
    """A planned push: what ships, to whom, and what stays behind on this machine.

    A context manager: `targets` (already connecting, see plan_push) are closed on exit.
    """

    plan: PushPlan
    remotes: list[Remote]
    not_shipped: list[gitlocal.Change] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    targets: dict[str, Target] = field(default_factory=dict)

    def __enter__(self) -> "PushJob":
        return self

    def __exit__(self, *exc: object) -> None:
        close_all(self.targets)


def workspace_root(config: Config) -> Path:
    """The git work tree of this workspace. Raises GitError outside one."""
    return gitlocal.toplevel(config.root or Path.cwd())


def plan_push(config: Config, spec: str | None, *, wip_: bool = False, deploy: bool = True,
              force: bool = False, redeploy: bool = False) -> PushJob:
    """Decide the commit and ref to ship; with `wip_` snapshot the work tree first (nothing local moves).

    The servers' connections open meanwhile, in the background (Target.start).
    """
    root = workspace_root(config)
    remotes = targets.resolve(config, spec)
    started = start_targets(config, remotes)
    try:
        job = _plan_push(root, remotes, wip_, deploy, force, redeploy)
    except BaseException:
        close_all(started)
        raise
    job.targets = started
    return job


def _plan_push(root: Path, remotes: list[Remote], wip_: bool, deploy: bool, force: bool,
               redeploy: bool) -> PushJob:
    changes = gitlocal.changes(root)
    if wip_:
        branch = _branch_or_default(root)
        sha, ref = wip.snapshot(root), f"refs/bridge/wip/{branch}"
    else:
        branch = gitlocal.current_branch(root)
        sha, ref = gitlocal.out(root, "rev-parse", "HEAD"), f"refs/heads/{branch}"
    plan = PushPlan(root, branch, sha, ref, wip=wip_, deploy=deploy, force=force, redeploy=redeploy)
    job = PushJob(plan, remotes, [] if wip_ else changes)
    if wip_:
        job.skipped = [r.name for r in remotes if r.kind == "git"]
        job.remotes = [r for r in remotes if r.kind != "git"]
    if not job.remotes:
        raise UsageError("--wip snapshots go to servers only, and no server is among the targets")
    return job


def start_targets(config: Config, remotes: list[Remote]) -> dict[str, Target]:
    """Start connecting to the first `forks` server remotes now (push starts the rest in turn); one that
    cannot be set up is left for push to report."""
    started = {}
    for remote in [r for r in remotes if r.kind == "server"][:max(1, config.exec.forks)]:
        try:
            started[remote.name] = Target(config, remote).start(config.deploy)
        except BridgeError:
            pass  # push_server meets the same error and makes it this host's result
    return started


def close_all(started: dict[str, Target]) -> None:
    for target in started.values():
        target.close()


def _branch_or_default(root: Path) -> str:
    """The branch name for a --wip ref; an unborn or detached HEAD still gets one."""
    proc = gitlocal.git(root, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    return proc.stdout.decode(errors="surrogateescape").strip() or "detached"


def push(config: Config, job: PushJob, emit: Emit) -> list[PushResult]:
    """Push `job` to every remote in parallel; each outcome (ok or not) is emitted as HostDone and returned."""

    def one(remote: Remote) -> PushResult:
        try:
            if remote.kind == "git":
                result = push_git(remote, job.plan, emit)
            else:
                result = push_server(config, remote, job.plan, emit, job.targets.get(remote.name))
        except BridgeError as e:
            result = failure(remote.name, remote.kind, job.plan.sha, e)
        emit(HostDone(remote.name, result))
        return result

    return fan_out(config, job.remotes, one)


def prepare_remotes(config: Config) -> list[tuple[str, str | None]]:
    """`bridge init`: prepare every server remote's deploy root; (name, error or None) per remote."""
    servers = [r for r in config.remotes.values() if r.kind == "server" and targets.parse_url(r.url).path]

    def one(remote: Remote) -> tuple[str, str | None]:
        try:
            with Target(config, remote) as target:
                target.ensure_prepared(config.deploy, always=True)
            return remote.name, None
        except BridgeError as e:
            return remote.name, e.message

    return fan_out(config, servers, one) if servers else []


def pull(config: Config, spec: str | None) -> list[PullResult]:
    """Pull from each target in turn (merges must not interleave in one work tree)."""
    root = workspace_root(config)
    return [pull_one(config, remote, root) for remote in targets.resolve(config, spec)]


def status(config: Config, spec: str | None) -> list[RemoteStatus]:
    """Every target's status, asked in parallel; unreachable hosts are rows, not errors."""
    root = workspace_root(config)
    branch = gitlocal.current_branch(root)
    dirty = [str(c) for c in gitlocal.changes(root)]
    return fan_out(config, targets.resolve(config, spec), lambda r: status_one(config, r, root, branch, dirty))


def server_remote(config: Config, spec: str | None) -> Remote:
    """Exactly one server remote (rollback acts on one deploy root at a time)."""
    remotes = [r for r in targets.resolve(config, spec) if r.kind == "server"]
    if len(remotes) != 1:
        raise UsageError(f"rollback needs one server remote; `{spec or 'default'}` names {len(remotes)}",
                         hint="name a single remote: bridge rollback prod")
    return remotes[0]
