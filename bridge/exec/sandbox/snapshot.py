"""What a local sandbox sees at /workspace when nothing is deployed: the files git tracks, as they are now.

Never the checkout itself: its `.git` and its ignored files (`.env`, keys, build output) are no
business of untrusted code, and a checkout in a 0700 folder would be unreadable by the sandbox
user. A snapshot is the tracked files of the work tree (HEAD plus staged and unstaged changes to
tracked files; untracked files are left out, as `git stash` leaves them), written once per tree
under `$XDG_CACHE_HOME/bridge/sandbox/<tree>` with modes anyone may read, and reused while the tree
is unchanged: a run with nothing changed costs three small git calls, no copy. The tree id comes
from a throwaway index (a copy of the real one, so `add -u` reuses its stat data): the user's
index, branch and files are never touched; only blob objects of changed files are written, as
`git add` would.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from bridge.errors import GitError
from bridge.paths import cache_dir, ensure_private_dir

KEPT = 8  # snapshots kept (least recently used go first): a few branches' worth, little disk


def snapshots_dir() -> Path:
    """`$XDG_CACHE_HOME/bridge/sandbox` (0700: the bind mount needs no access to its parents)."""
    return ensure_private_dir(cache_dir() / "sandbox")


def tracked_snapshot(root: Path, cache: Path | None = None) -> Path | None:
    """The snapshot of `root`'s tracked files (the folder of `root` inside it); None outside a git repo.

    Raises GitError when git fails inside a repo.
    """
    cache = cache or snapshots_dir()
    with tempfile.TemporaryDirectory(prefix="take-", dir=cache) as tmp:
        where = _locate(root)
        if where is None:
            return None
        prefix, real_index = where
        env = _index_env(real_index, Path(tmp) / "index")
        _git(root, ["add", "-u"], env)
        tree = _git(root, ["write-tree"], env).strip()
        snapshot = cache / tree
        if not snapshot.is_dir():
            _write(root, env, Path(tmp) / "tree", snapshot)
            _prune(cache)
    os.utime(snapshot)
    return snapshot / prefix if prefix else snapshot


def _locate(root: Path) -> tuple[str, Path] | None:
    """(root's path inside its repo, the repo's index file), None when root is no git work tree."""
    proc = _run(root, ["rev-parse", "--show-prefix", "--path-format=absolute", "--git-path", "index"], None)
    if proc.returncode != 0:
        return None
    prefix, index = proc.stdout.decode(errors="surrogateescape").splitlines()
    return prefix.rstrip("/"), Path(index)


def _index_env(real_index: Path, index: Path) -> dict[str, str]:
    """A throwaway index starting from the real one (none yet: an empty one, as in a fresh repo)."""
    if real_index.is_file():
        shutil.copyfile(real_index, index)
    return {**os.environ, "GIT_INDEX_FILE": str(index)}


def _write(root: Path, env: dict[str, str], staging: Path, snapshot: Path) -> None:
    """Check the index's files out under `staging`, open them to every reader, then move it in place."""
    staging.mkdir()
    _git(root, ["--work-tree", str(staging), "checkout-index", "--all", "--force"], env)
    _open_modes(staging)
    try:
        staging.rename(snapshot)
    except OSError:
        pass  # another run wrote the same tree meanwhile: its copy is as good; ours goes with tmp


def _open_modes(top: Path) -> None:
    """Folders 0755, files 0644 (0755 when executable), whatever the user's umask; symlinks as they are."""
    os.chmod(top, 0o755)
    for folder, dirs, files in os.walk(top):
        for name in dirs:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755)
        for name in files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if not os.path.islink(path):
                os.chmod(path, 0o755 if st.st_mode & 0o100 else 0o644)


def _prune(cache: Path) -> None:
    """Remove all but the KEPT most recently used snapshots."""
    snapshots = [p for p in cache.iterdir() if len(p.name) in (40, 64) and p.is_dir()]
    snapshots.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in snapshots[KEPT:]:
        shutil.rmtree(old, ignore_errors=True)


def _git(root: Path, args: list[str], env: dict[str, str]) -> str:
    """stdout of a git command that must succeed; raises GitError with git's own message."""
    proc = _run(root, args, env)
    if proc.returncode != 0:
        raise GitError(f"cannot snapshot {root} for the sandbox: git {args[0]}: "
                       f"{proc.stderr.decode(errors='replace').strip()}", hint="check `git status` in the workspace")
    return proc.stdout.decode(errors="surrogateescape")


def _run(root: Path, args: list[str], env: dict[str, str] | None) -> subprocess.CompletedProcess:
    """git in `root`; a missing git is a GitError naming the fix."""
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, env=env)
    except FileNotFoundError as e:
        raise GitError("git is not installed", hint="install git and try again") from e
