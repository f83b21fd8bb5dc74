"""`bridge status`: per remote, where its branch stands against ours and what it runs.

One exec asks the server for its branch sha and the hook's `--status` JSON; a fetch (only
when we lack the server's commit) makes ahead/behind exact.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bridge.config import Config, Remote
from bridge.errors import BridgeError, ExitCode
from bridge.fleet import host_failure
from bridge.targets import git_url
from bridge.sync import gitlocal
from bridge.sync.pull import fetch, tracking_ref
from bridge.sync.target import Target

# $1 repo, $2 ref, then the hook argv: the branch's sha (or "-") on line 1, the hook's JSON after.
STATUS_SCRIPT = 'git --git-dir "$1" rev-parse -q --verify "$2" || echo -; shift 2; exec "$@"'


@dataclass
class RemoteStatus:
    """One remote's state; `error` is set (and `reachable` False) when it could not be asked.

    `status` and `exit_code` read a failure as an exec or push result does (fleet.host_failure).
    """

    remote: str
    url: str
    kind: str
    branch: str
    reachable: bool = False
    remote_sha: str | None = None
    ahead: int | None = None
    behind: int | None = None
    current: str | None = None
    deployed_sha: str | None = None
    last: dict | None = None
    error: str | None = None
    dirty: list[str] = field(default_factory=list)
    status: str = "ok"
    exit_code: int = 0

    def to_dict(self) -> dict:
        return {**asdict(self), "host": self.remote}  # `host`, as in exec's and test's rows


def status(config: Config, remote: Remote, root: Path, branch: str, dirty: list[str]) -> RemoteStatus:
    """Ask one remote; never raises for an unreachable host (it is a row in the table)."""
    result = RemoteStatus(remote.name, remote.url, remote.kind, branch, dirty=dirty)
    try:
        if remote.kind == "git":
            _git_remote(result, remote, root)
        else:
            _server(result, config, remote, root)
    except BridgeError as e:
        failed = host_failure(remote.name, e)
        result.error, result.status, result.exit_code = failed.error, failed.status, failed.exit_code
        return result
    if not result.reachable:  # git ls-remote failed: its words are the error
        result.status, result.exit_code = "unreachable", int(ExitCode.CONNECT)
    return result


def _server(result: RemoteStatus, config: Config, remote: Remote, root: Path) -> None:
    with Target(config, remote) as target:
        argv = ["sh", "-c", STATUS_SCRIPT, "sh", str(target.layout.repo), f"refs/heads/{result.branch}",
                *target.hook("--status")]
        code, out, err = target.run(argv)
        result.reachable = True
        if code != 0:
            result.error = f"not prepared, or the hook failed: {(err or out).strip()[-200:]}"
            return
        first, _, rest = out.partition("\n")
        _set_deploy(result, json.loads(rest))
        result.remote_sha = None if first.strip() == "-" else first.strip()
        if result.remote_sha and not gitlocal.resolve(root, result.remote_sha):
            with target.git_remote() as (url, env, _link):
                fetch(root, url, env, remote.name, result.branch)
    _counts(result, root)


def _set_deploy(result: RemoteStatus, hook_status: dict) -> None:
    result.current = hook_status.get("current")
    result.deployed_sha = hook_status.get("sha")
    last = hook_status.get("last") or None
    if last:
        keep = ("action", "result", "start", "duration", "sha", "release", "failed_step", "error")
        result.last = {k: last[k] for k in keep if k in last}


def _git_remote(result: RemoteStatus, remote: Remote, root: Path) -> None:
    proc = subprocess.run(["git", "-C", str(root), "ls-remote", git_url(remote), f"refs/heads/{result.branch}"],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        result.error = proc.stderr.strip()[-200:]
        return
    result.reachable = True
    result.remote_sha = proc.stdout.split()[0] if proc.stdout.strip() else None
    if result.remote_sha and not gitlocal.resolve(root, result.remote_sha):
        fetch(root, git_url(remote), {}, remote.name, result.branch)
    _counts(result, root)


def _counts(result: RemoteStatus, root: Path) -> None:
    if result.remote_sha is None:
        result.ahead, result.behind = int(gitlocal.out(root, "rev-list", "--count", "HEAD")), 0
        return
    if gitlocal.resolve(root, result.remote_sha) or gitlocal.resolve(root, tracking_ref(result.remote, result.branch)):
        result.ahead, result.behind = gitlocal.ahead_behind(root, "HEAD", result.remote_sha)
