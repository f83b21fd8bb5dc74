"""Runs ON the server (stdlib, Python 3.9+), sent by prepare.py: make a deploy root ready, idempotently.

Reads its payload from the bootstrap (see prepare.py): the root, the files to install and the
settings. Prints one JSON line describing what it did. Everything is a path or an argv: no shell.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

# post-receive runs with cwd = the bare repo; $0 locates it however git spelled the path. hook.py
# is imported, not run as a script, so its compiled .pyc is cached (a script is recompiled each push).
# -I -S: the hook is stdlib-only, so the server's site .pth files and PYTHON* variables neither slow
# it down nor change it.
POST_RECEIVE = """#!/bin/sh
exec python3 -I -S -c 'import sys; sys.path.insert(0, sys.argv[1]); import hook; sys.exit(hook.main(sys.argv[2:]))' \\
    "$(dirname "$0")/../../.bridge" --post-receive
"""


def write_file(path: str, text: str, mode: int = 0o644) -> None:
    """Write via a temp name and rename, so a push racing a re-prepare never sees half a hook."""
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def git_config(repo: str, key: str, value: str) -> None:
    subprocess.run(["git", "--git-dir", repo, "config", key, value], check=True)


def main(payload: dict) -> None:
    root = payload["root"]
    repo = os.path.join(root, "repo.git")
    state = os.path.join(root, ".bridge")
    for sub in ("releases", ".bridge", os.path.join(".bridge", "envs"), os.path.join(".bridge", "meta")):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    created = not os.path.isfile(os.path.join(repo, "HEAD"))
    if created:
        subprocess.run(["git", "init", "--quiet", "--bare", repo], check=True)
    git_config(repo, "receive.denyNonFastForwards", "true" if payload["deny_non_fast_forwards"] else "false")
    git_config(repo, "receive.advertisePushOptions", "true")
    git_config(repo, "receive.autogc", "false")  # the hook starts `gc --auto` itself, once the report is out
    for name, text in payload["files"].items():
        write_file(os.path.join(state, name), text, 0o755 if name == "hook.py" else 0o644)
    write_file(os.path.join(state, "deploy.json"), json.dumps(payload["settings"], indent=2, sort_keys=True))
    write_file(os.path.join(repo, "hooks", "post-receive"), POST_RECEIVE, 0o755)
    print(json.dumps({"root": root, "created": created, "python": sys.version.split()[0]}))
