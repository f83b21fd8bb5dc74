"""The developer's own git repo: small read/write helpers over the `git` program (argv only, no shell).

subprocess, not GitPython: importing GitPython costs more than the one-file push it would serve.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bridge.errors import GitError


def git(root: Path, *args: str, env: dict[str, str] | None = None, check: bool = True,
        stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Run git in `root`; raises GitError with git's own message when `check` and it fails."""
    full_env = {**os.environ, **env} if env else None
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], input=stdin, capture_output=True, env=full_env)
    except FileNotFoundError as e:
        raise GitError("git is not installed", hint="install git and try again") from e
    if check and proc.returncode != 0:
        raise GitError(f"git {args[0]} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc


def out(root: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """stdout of a git command that must succeed, stripped."""
    return git(root, *args, env=env).stdout.decode(errors="surrogateescape").strip()


def toplevel(start: Path) -> Path:
    """The work tree that holds `start`. Raises GitError outside a repo."""
    proc = git(start, "rev-parse", "--show-toplevel", check=False)
    if proc.returncode != 0:
        raise GitError(f"{start} is not inside a git repository", hint="run `bridge init` here")
    return Path(proc.stdout.decode(errors="surrogateescape").strip())


def current_branch(root: Path) -> str:
    """The checked-out branch. Raises GitError when HEAD is detached or has no commit yet."""
    proc = git(root, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    if proc.returncode != 0:
        raise GitError("HEAD is detached: bridge pushes a branch", hint="git switch -c NAME, then push again")
    branch = proc.stdout.decode(errors="surrogateescape").strip()
    if git(root, "rev-parse", "--verify", "--quiet", "HEAD", check=False).returncode != 0:
        raise GitError(f"branch {branch} has no commit yet", hint="git add -A && git commit -m 'first', "
                       "or ship the files as they are with `bridge push --wip`")
    return branch


def resolve(root: Path, rev: str) -> str | None:
    """The full sha of `rev`, or None when it does not exist here."""
    proc = git(root, "rev-parse", "--verify", "--quiet", rev + "^{commit}", check=False)
    return proc.stdout.decode().strip() if proc.returncode == 0 else None


@dataclass(frozen=True)
class Change:
    """One line of `git status`: two-letter code and path."""

    code: str
    path: str

    def __str__(self) -> str:
        return f"{self.code} {self.path}"


def changes(root: Path) -> list[Change]:
    """Uncommitted changes, untracked-not-ignored files included (what --wip would ship)."""
    raw = git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all").stdout
    entries = raw.decode(errors="surrogateescape").split("\0")
    found: list[Change] = []
    skip = False
    for entry in entries:
        if skip or not entry:
            skip = False
            continue
        found.append(Change(entry[:2], entry[3:]))
        skip = entry[0] in "RC"  # a rename is followed by its source path
    return found


def ahead_behind(root: Path, local: str, remote: str) -> tuple[int, int]:
    """(commits only in `local`, commits only in `remote`); both must exist here."""
    left, right = out(root, "rev-list", "--left-right", "--count", f"{local}...{remote}").split()
    return int(left), int(right)


def is_ancestor(root: Path, older: str, newer: str) -> bool:
    return git(root, "merge-base", "--is-ancestor", older, newer, check=False).returncode == 0
