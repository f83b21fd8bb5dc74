"""The releases of a deploy root: which are complete, the atomic switch of `current`, pruning (through
a trash emptied in the background), and building a release's tree from the previous one's files.

Runs on the server (stdlib, Python 3.9+) beside hook.py.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

try:  # installed on the server: layout.py and procs.py sit beside this file
    from layout import RELEASE_TMP_PREFIX, Layout, remove_tree
    from procs import clean_env, detach, git, git_output, start_git
except ImportError:  # imported from the bridge package
    from .layout import RELEASE_TMP_PREFIX, Layout, remove_tree
    from .procs import clean_env, detach, git, git_output, start_git

TRASH = "trash"  # under .bridge/: what prune removes goes here in one rename, then `rm -rf` in the background


# ---------------------------------------------------------------- releases


def read_meta(layout: Layout, name: str) -> dict | None:
    try:
        return json.loads(layout.meta_file(name).read_text())
    except (OSError, ValueError):
        return None


def complete_releases(layout: Layout) -> list:
    """Names of finished releases (those with a meta file), oldest first.

    Ordered by the deploy's start time in the meta, not by name: two deploys within one second
    would otherwise sort by sha.
    """
    if not layout.releases.is_dir():
        return []
    metas = {n: m for n in os.listdir(layout.releases) if not n.startswith(".") and (m := read_meta(layout, n))}
    return sorted(metas, key=lambda n: (metas[n].get("time", ""), n))


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, path)


def switch_current(layout: Layout, name: str) -> None:
    """Point `current` at a release in one rename, so a reader sees the old or the new, never neither."""
    tmp = layout.root / "current.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(os.path.join("releases", name), tmp)
    os.replace(tmp, layout.current)


def discard_later(layout: Layout, path: Path) -> None:
    """Move a tree into the trash in one rename (remove it now if it cannot move); empty_trash deletes it."""
    trash = layout.state / TRASH
    try:
        trash.mkdir(exist_ok=True)
        os.rename(str(path), str(trash / ("%s.%s" % (path.name, os.urandom(4).hex()))))
    except OSError:
        remove_tree(path)


def empty_trash(layout: Layout) -> None:
    """Delete the trash in a detached `rm -rf`: thousands of unlinks need not hold up the deploy's report.

    A deleter killed half way leaves its rest to the next deploy's.
    """
    trash = layout.state / TRASH
    try:
        doomed = [str(trash / name) for name in os.listdir(str(trash))]
    except OSError:
        return
    if doomed:
        detach(["rm", "-rf", "--", *doomed])


def clear_unfinished(layout: Layout) -> None:
    """Drop what a killed deploy left behind: temp dirs and releases that never got their meta."""
    if not layout.releases.is_dir():
        return
    current = layout.current_release()
    for name in os.listdir(layout.releases):
        if name != current and (name.startswith(".") or not layout.meta_file(name).is_file()):
            remove_tree(layout.release(name))


def prune(layout: Layout, keep: int) -> list:
    """Remove all but the newest `keep` releases, never the current one; returns what it removed."""
    current = layout.current_release()
    names = complete_releases(layout)
    doomed = [n for n in names[: max(0, len(names) - max(keep, 1))] if n != current]
    for name in doomed:
        discard_later(layout, layout.release(name))
        layout.meta_file(name).unlink()
    prune_envs(layout)
    empty_trash(layout)
    return doomed


def prune_envs(layout: Layout) -> None:
    """Remove dependency environments no remaining release links to."""
    if not layout.envs.is_dir():
        return
    used = set()
    for name in os.listdir(layout.releases):
        for link in (".venv", "node_modules"):
            target = layout.release(name) / link
            if target.is_symlink():
                used.add(os.path.basename(os.readlink(target)) if link == ".venv"
                         else os.path.basename(os.path.dirname(os.readlink(target))))
    for env in os.listdir(layout.envs):
        if env not in used:
            discard_later(layout, layout.envs / env)


# ---------------------------------------------------------------- checkout


def ls_tree(layout: Layout, sha: str) -> dict:
    """path -> (mode, type, object) for every entry of a commit's tree."""
    entries = {}
    for item in git(layout, "ls-tree", "-r", "-z", "--full-tree", sha).split(b"\0"):
        if item:
            info, path = item.split(b"\t", 1)
            mode, kind, obj = info.decode().split(" ")
            entries[os.fsdecode(path)] = (mode, kind, obj)
    return entries


def start_diff(layout: Layout, old: str, new: str) -> subprocess.Popen:
    """Start listing the paths added, modified or retyped between two commits; changed_paths() reads them.

    (Deletions need no listing: a path the new tree lacks is simply not linked.)
    """
    return start_git(layout, "diff-tree", "-r", "-z", "--no-renames", "--no-commit-id", "--name-only", old, new)


def changed_paths(diff: subprocess.Popen) -> set:
    return {os.fsdecode(p) for p in git_output(diff).split(b"\0") if p}


def link_unchanged(prev: Path, dest: Path, new: dict, changed: set) -> list:
    """Hardlink every file the commit did not change from the previous release; return paths still to write.

    A link shares the inode, so a changed file must never be written through one: changed paths
    are left out here and written fresh by git, which leaves the old release untouched.
    """
    todo, made = [], {""}
    src_root, dst_root = str(prev) + os.sep, str(dest) + os.sep
    for path, (mode, kind, _) in new.items():
        if path in changed or kind != "blob":
            todo.append(path)
            continue
        parent = os.path.dirname(path)
        if parent not in made:
            os.makedirs(dst_root + parent, exist_ok=True)
            made.add(parent)
        if not copy_entry(src_root + path, dst_root + path, mode):
            todo.append(path)
    return todo


def copy_entry(src: str, dst: str, mode: str) -> bool:
    """Link a file (or recreate a symlink) from the previous release; False if it is gone or unlinkable."""
    try:
        if mode == "120000":
            os.symlink(os.readlink(src), dst)
        else:
            os.link(src, dst, follow_symlinks=False)
        return True
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise
        return False


def checkout_paths(layout: Layout, sha: str, dest: Path, paths: list | None) -> None:
    """Write `paths` of commit `sha` (all when None) under dest via a throwaway index."""
    env = clean_env()
    env["GIT_INDEX_FILE"] = str(layout.state / "index.tmp")
    tree = ("--work-tree", str(dest))
    try:
        git(layout, "read-tree", sha, env=env)
        if paths is None:
            git(layout, *tree, "checkout-index", "-a", "-f", env=env)
        elif paths:
            data = b"\0".join(os.fsencode(p) for p in paths) + b"\0"
            git(layout, *tree, "checkout-index", "-f", "-z", "--stdin", env=env, stdin=data)
    finally:
        Path(env["GIT_INDEX_FILE"]).unlink()


def build_tree(layout: Layout, sha: str, dest: Path) -> str:
    """Fill dest with commit `sha`, reusing the current release's files; returns a one-line summary."""
    prev = layout.current_release()
    prev_meta = read_meta(layout, prev) if prev else None
    dest.mkdir(parents=True)
    if not prev_meta:
        checkout_paths(layout, sha, dest, None)
        return "full checkout (no previous release)"
    diff = start_diff(layout, prev_meta["sha"], sha)  # runs while ls-tree does
    new = ls_tree(layout, sha)
    todo = link_unchanged(layout.release(prev), dest, new, changed_paths(diff))
    checkout_paths(layout, sha, dest, todo)
    return "%d files reused from %s, %d written" % (len(new) - len(todo), prev, len(todo))
