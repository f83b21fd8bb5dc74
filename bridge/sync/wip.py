"""`--wip`: a snapshot commit of the work tree that leaves branch, index, stash and files untouched.

A throwaway GIT_INDEX_FILE (a copy of the real index) takes `git add -A`; `write-tree` and
`commit-tree` then make a commit whose parent is HEAD. No ref of the user's moves and the real
index is never written: the snapshot exists only as an object until it is pushed.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from bridge.sync import gitlocal


def snapshot(root: Path, message: str = "bridge --wip snapshot") -> str:
    """Commit the work tree as it is (untracked, not ignored, files included); returns the commit sha."""
    with tempfile.TemporaryDirectory(prefix="bridge-wip-") as tmp:
        index = os.path.join(tmp, "index")
        real = Path(gitlocal.out(root, "rev-parse", "--path-format=absolute", "--git-path", "index"))
        if real.is_file():
            shutil.copyfile(real, index)  # starting from it keeps `add -A` fast: stat data is reused
        env = {"GIT_INDEX_FILE": index}
        gitlocal.git(root, "add", "-A", env=env)
        tree = gitlocal.out(root, "write-tree", env=env)
    head = gitlocal.resolve(root, "HEAD")
    parents = ["-p", head] if head else []
    return gitlocal.out(root, "commit-tree", tree, *parents, "-m", message)
