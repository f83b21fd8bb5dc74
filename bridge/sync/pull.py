"""`bridge pull`: bring the server's commits on this branch back, never discarding local work.

Fetch into a private ref (`refs/bridge/remotes/<remote>/<branch>`), then fast-forward, else
merge. Before touching anything we refuse when a dirty or untracked file would be overwritten;
a conflicted merge is aborted (only merge-touched files were clean, so nothing local is lost).
"""
from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from bridge import targets
from bridge.config import Config, Remote
from bridge.errors import ConnectError, GitError
from bridge.sync import gitlocal
from bridge.sync.target import Target


@dataclass
class PullResult:
    """What pull did: `action` is up-to-date, fast-forward, merge or nothing (no branch on the server)."""

    remote: str
    branch: str
    action: str
    sha: str | None = None
    commits: int = 0


def tracking_ref(remote: str, branch: str) -> str:
    return f"refs/bridge/remotes/{remote}/{branch}"


@contextmanager
def git_access(config: Config, remote: Remote) -> Iterator[tuple[str, dict[str, str]]]:
    """(url, env) for local git to reach `remote`'s repository, SSH relayed for servers."""
    if remote.kind == "git":
        yield targets.git_url(remote), {}
        return
    with Target(config, remote) as target, target.git_remote() as (url, env, _link):
        yield url, env


def fetch(root: Path, url: str, env: dict[str, str], remote: str, branch: str) -> str | None:
    """Fetch the server's `branch` into our private ref; its sha, or None when the server has no such branch."""
    ref = tracking_ref(remote, branch)
    proc = subprocess.run(["git", "-C", str(root), "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", url,
                           f"+refs/heads/{branch}:{ref}"], capture_output=True, env={**os.environ, **env})
    message = proc.stderr.decode(errors="replace").strip()
    if proc.returncode != 0:
        if "couldn't find remote ref" in message:
            return None
        if "connection to the server was lost" in message or "bridge:" in message:
            raise ConnectError(f"{remote}: fetch failed: {message}")
        raise GitError(f"{remote}: git fetch failed: {message}")
    return gitlocal.resolve(root, ref)


def pull(config: Config, remote: Remote, root: Path) -> PullResult:
    """Fetch and integrate; raises GitError naming files for a refused or conflicted pull."""
    branch = gitlocal.current_branch(root)
    with git_access(config, remote) as (url, env):
        theirs = fetch(root, url, env, remote.name, branch)
    if theirs is None:
        return PullResult(remote.name, branch, "nothing")
    head = gitlocal.out(root, "rev-parse", "HEAD")
    if gitlocal.is_ancestor(root, theirs, head):
        return PullResult(remote.name, branch, "up-to-date", head)
    _refuse_overwrites(root, head, theirs, remote.name)
    count = gitlocal.ahead_behind(root, head, theirs)[1]
    if gitlocal.is_ancestor(root, head, theirs):
        gitlocal.git(root, "merge", "--ff-only", "--quiet", theirs)
        return PullResult(remote.name, branch, "fast-forward", theirs, count)
    return _merge(root, remote.name, branch, theirs, count)


def _refuse_overwrites(root: Path, head: str, theirs: str, remote: str) -> None:
    """Refuse, with the list, when a file the server changed is dirty or untracked here."""
    base = gitlocal.out(root, "merge-base", head, theirs)
    touched = set(gitlocal.git(root, "diff", "--name-only", "-z", base, theirs).stdout.decode(
        errors="surrogateescape").split("\0")) - {""}
    at_risk = sorted(c.path for c in gitlocal.changes(root) if c.path in touched)
    if at_risk:
        raise GitError(f"pull from {remote} refused: it would overwrite local changes to: {', '.join(at_risk)}",
                       hint="commit them (or move them aside), then `bridge pull` again; nothing was changed")


def _merge(root: Path, remote: str, branch: str, theirs: str, count: int) -> PullResult:
    ref = tracking_ref(remote, branch)
    proc = gitlocal.git(root, "merge", "--no-edit", "--quiet", "-m", f"Merge {branch} from bridge remote {remote}",
                        theirs, check=False)
    if proc.returncode == 0:
        return PullResult(remote, branch, "merge", gitlocal.out(root, "rev-parse", "HEAD"), count)
    conflicts = gitlocal.out(root, "diff", "--name-only", "--diff-filter=U").splitlines()
    gitlocal.git(root, "merge", "--abort", check=False)
    if not conflicts:
        raise GitError(f"merging {remote}'s {branch} failed: {proc.stderr.decode(errors='replace').strip()}")
    raise GitError(f"pull from {remote}: merge conflicts in {', '.join(conflicts)}; the merge was aborted, "
                   "your files are as they were",
                   hint=f"to resolve by hand: `git merge {ref}`, fix those files, `git commit`, then `bridge push`")
