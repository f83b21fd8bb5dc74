"""`bridge push` for one target: git push (through the SSH layer), then read the deploy the hook reports.

A fast-forward push lets post-receive deploy. An unchanged ref fires no hook, so we run
`hook.py --deploy SHA` ourselves. `--wip` and `--force` push to a fresh private ref (always a
creation, so receive.denyNonFastForwards stays on) and one server-side script moves the real
ref, with the old value checked, then deploys.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bridge.config import Config, Remote
from bridge.errors import BridgeError, GitError, RemoteError
from bridge.fleet import host_failure
from bridge.targets import git_url
from bridge.sync.report import DeployReport, Emit, Line, MarkerReader
from bridge.sync.target import LineSplitter, Target

NO_DEPLOY_OPTION = "bridge.no-deploy"
INCOMING_PREFIX = "refs/bridge/incoming/"
OVERWRITES = "bridge:overwrites "
# $1 repo, $2 ref, $3 new sha, $4 incoming ref, then the hook argv (or nothing): move the ref, deploy.
PLACE_SCRIPT = r"""repo=$1 ref=$2 new=$3 tmp=$4; shift 4
old=$(git --git-dir "$repo" rev-parse -q --verify "$ref")
if [ -n "$old" ] && ! git --git-dir "$repo" merge-base --is-ancestor "$old" "$new"; then
  git --git-dir "$repo" log --format='bridge:overwrites %h %s' -n 20 "$new..$old"
fi
git --git-dir "$repo" update-ref -m "bridge push" "$ref" "$new" ${old:+"$old"}; rc=$?
git --git-dir "$repo" update-ref -d "$tmp"
[ $rc -eq 0 ] || exit $rc
[ $# -eq 0 ] || exec "$@"
"""


@dataclass(frozen=True)
class PushPlan:
    """What to ship, decided once for all targets."""

    root: Path
    branch: str
    sha: str
    ref: str
    wip: bool = False
    deploy: bool = True
    force: bool = False
    redeploy: bool = False  # deploy even when the server's `current` already holds this commit


@dataclass
class PushResult:
    """One target's outcome; `status` is deployed, pushed, up-to-date, failed, rejected or unreachable."""

    host: str
    kind: str
    sha: str
    status: str = "pushed"
    report: DeployReport = field(default_factory=DeployReport)
    error: str | None = None
    hint: str | None = None
    exit_code: int = 0
    overwritten: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class GitRun:
    """A finished local `git push`: exit code, porcelain ref lines, and its stderr lines minus the markers."""

    code: int
    refs: dict[str, tuple[str, str]]
    messages: list[str]


def push_server(config: Config, remote: Remote, plan: PushPlan, emit: Emit,
                target: Target | None = None) -> PushResult:
    """Push and deploy to one server remote (through `target` when the caller already started it).

    Raises BridgeError (the caller turns it into a result).
    """
    with (target or Target(config, remote)).start(config.deploy) as target:
        if plan.wip or plan.force:
            return _push_and_place(target, plan, emit)
        return _push_branch(target, plan, emit)


def push_git(remote: Remote, plan: PushPlan, emit: Emit) -> PushResult:
    """A plain git remote (kind: git): push the branch, no deploy; the user's own git/ssh setup applies."""
    result = PushResult(remote.name, "git", plan.sha)
    args = ["--force"] if plan.force else []
    run = run_push(plan.root, git_url(remote), {}, args, f"{plan.sha}:refs/heads/{plan.branch}",
                   lambda text: emit(Line(remote.name, text)))
    flag, summary = run.refs.get(f"refs/heads/{plan.branch}", ("!", "no answer from git"))
    if run.code != 0 or flag == "!":
        raise_rejected(run, flag, summary, remote.name)
    result.status = "up-to-date" if flag == "=" else "pushed"
    return result


def _push_branch(target: Target, plan: PushPlan, emit: Emit) -> PushResult:
    reader = MarkerReader(target.host, emit, remote_only=True)
    options = [] if plan.deploy else ["-o", NO_DEPLOY_OPTION]
    with target.git_remote(target.ready) as (url, env, link):
        run = run_push(plan.root, url, env, options, f"{plan.sha}:{plan.ref}", reader.feed)
        _raise_link_error(link, run)
        flag, summary = run.refs.get(plan.ref, ("!", "no answer from git"))
        if run.code != 0 or flag == "!":
            raise_rejected(run, flag, summary, target.host)
    result = PushResult(target.host, "server", plan.sha, report=reader.report)
    if flag == "=" and plan.deploy:
        result.report = _deploy_again(target, plan, emit)
    return _judge(result, plan)


def _push_and_place(target: Target, plan: PushPlan, emit: Emit) -> PushResult:
    """Ship to a fresh private ref, then move `plan.ref` to it on the server and deploy."""
    incoming = INCOMING_PREFIX + os.urandom(16).hex()
    with target.git_remote(target.ready) as (url, env, link):
        run = run_push(plan.root, url, env, [], f"{plan.sha}:{incoming}", lambda text: None)
        _raise_link_error(link, run)
        flag, summary = run.refs.get(incoming, ("!", "no answer from git"))
        if run.code != 0 or flag == "!":
            raise_rejected(run, flag, summary, target.host)
    result = PushResult(target.host, "server", plan.sha)
    hook = target.hook("--deploy", plan.sha, "--ref", plan.ref) if plan.deploy else []
    argv = ["sh", "-c", PLACE_SCRIPT, "sh", str(target.layout.repo), plan.ref, plan.sha, incoming, *hook]
    reader = MarkerReader(target.host, emit)
    code = target.stream(argv, lambda text: _place_line(text, reader, result, plan))
    result.report = reader.report
    if code != 0 and not reader.report.done:
        raise RemoteError(f"{target.host}: could not move {plan.ref} to {plan.sha[:12]} (exit {code})",
                          hint="\n".join(reader.report.lines[-5:]) or None)
    return _judge(result, plan)


def _place_line(text: str, reader: MarkerReader, result: PushResult, plan: PushPlan) -> None:
    if text.startswith(OVERWRITES):
        if plan.force:
            result.overwritten.append(text[len(OVERWRITES):])
        return
    reader.feed(text)


def _deploy_again(target: Target, plan: PushPlan, emit: Emit) -> DeployReport:
    """The ref already pointed at this commit (no hook ran): deploy it explicitly, unless `current` holds it
    already (the hook then says so and makes no duplicate release) and --redeploy was not given."""
    reader = MarkerReader(target.host, emit)
    unless_current = [] if plan.redeploy else ["--if-changed"]
    target.stream(target.hook("--deploy", plan.sha, "--ref", plan.ref, *unless_current), reader.feed)
    return reader.report


def _judge(result: PushResult, plan: PushPlan) -> PushResult:
    """Status and exit code from the hook's summary; a failed deploy exits 1 with the step that failed."""
    done = result.report.done
    if not plan.deploy:
        result.status = "pushed"
    elif done is None:
        result.status, result.exit_code = "failed", 1
        result.error = "pushed, but the server reported no deploy"
        result.hint = "check deploy.branch in bridge.yaml; `bridge status` shows the last deploy"
    elif result.report.ok:
        result.status = "up-to-date" if done.get("unchanged") else "deployed"
    else:
        result.status, result.exit_code = "failed", 1
        result.error = f"deploy failed at step {done.get('failed_step')!r}: {done.get('error', '')}"
        result.hint = _where_current_is(done) + "; fix it and push again"
    return result


def _where_current_is(done: dict) -> str:
    """After a failed deploy: unchanged, back on the previous release, or (a failed first release) gone."""
    if "reverted_to" not in done:
        return "`current` is unchanged"
    if done["reverted_to"]:
        return f"`current` is back on releases/{done['reverted_to']}, its processes restarted"
    return "the first release failed: `current` and its processes were removed"


def run_push(root: Path, url: str, env: dict[str, str], options: list[str], refspec: str,
             on_line: Emit) -> GitRun:
    """`git push --porcelain OPTIONS URL REFSPEC`, streaming stderr lines to `on_line` as they come."""
    full_env = {**os.environ, **env, "LC_ALL": "C"}
    proc = subprocess.Popen(["git", "-C", str(root), "push", "--porcelain", *options, url, refspec], env=full_env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    messages: list[str] = []
    splitter = LineSplitter(lambda text: _route(text, on_line, messages))
    for chunk in iter(lambda: os.read(proc.stderr.fileno(), 65536), b""):  # type: ignore[union-attr]
        splitter.feed(chunk)
    splitter.flush()
    stdout = proc.stdout.read().decode(errors="replace")
    return GitRun(proc.wait(), parse_porcelain(stdout), messages)


def _route(text: str, on_line: Emit, messages: list[str]) -> None:
    if not text.startswith("remote: bridge:"):
        messages.append(text)
    on_line(text)


def parse_porcelain(stdout: str) -> dict[str, tuple[str, str]]:
    """dst ref -> (flag, summary) from `git push --porcelain` (flag `=` up to date, `!` rejected, …)."""
    refs = {}
    for line in stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and len(parts[0]) == 1 and ":" in parts[1]:
            refs[parts[1].rsplit(":", 1)[1]] = (parts[0], parts[2])
    return refs


def raise_rejected(run: GitRun, flag: str, summary: str, host: str) -> None:
    """Turn a refused or failed push into one clear error with the next step."""
    detail = "\n".join(run.messages[-6:])
    if "non-fast-forward" in summary or "fetch first" in summary:
        raise GitError(f"{host}: push refused: the server's branch has commits you do not have ({summary})",
                       hint="`bridge pull` to merge them, or `bridge push --force` to overwrite them")
    if "No space left" in detail or "No space left" in summary:
        raise RemoteError(f"{host}: the server's disk is full: {summary}",
                          hint="free space on the server, then push again; nothing was deployed")
    raise GitError(f"{host}: git push failed: {summary}" + (f"\n{detail}" if detail else ""))


def _raise_link_error(link: object, run: GitRun) -> None:
    """Errors the link saw (preparing failed, connection lost, refused command) explain a failed git best."""
    errors = getattr(getattr(link, "state", None), "errors", [])
    if errors and run.code != 0:
        raise errors[0]


def failure(host: str, kind: str, sha: str, error: BridgeError) -> PushResult:
    """A result for a target whose push raised, so one bad host never hides the others."""
    failed = host_failure(host, error)
    return PushResult(host, kind, sha, status=failed.status, error=failed.error, hint=failed.hint,
                      exit_code=failed.exit_code)
