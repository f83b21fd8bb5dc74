"""Where a deploy root keeps its things (DESIGN §5); shared by the client and the server hook.

Stdlib only and Python 3.9 compatible: this file is copied to the server next to hook.py.
"""
from __future__ import annotations

import datetime
import os
from pathlib import Path

RELEASE_TMP_PREFIX = ".tmp-"
# A release's own program folders, first on PATH for its app, its deploy commands and `bridge exec`.
RELEASE_BIN_DIRS = (".venv/bin", "node_modules/.bin")


class ServerError(Exception):
    """A server-side step cannot go on (a deploy step, a process, a dependency); one line says why."""


def remove_tree(path: Path) -> None:
    """Remove a file, a symlink (never what it points at) or a whole tree."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        import shutil

        shutil.rmtree(str(path), ignore_errors=True)


class Layout:
    """The paths under one deploy root, so client and server never disagree on a name.

    A plain class, not a dataclass: importing dataclasses costs the hook ~20 ms on every push.
    """

    __slots__ = ("root",)

    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return "Layout(%r)" % self.root

    @property
    def repo(self) -> Path:
        return self.root / "repo.git"

    @property
    def post_receive(self) -> Path:
        return self.repo / "hooks" / "post-receive"

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    @property
    def current(self) -> Path:
        return self.root / "current"

    @property
    def state(self) -> Path:
        return self.root / ".bridge"

    @property
    def deploys_log(self) -> Path:
        return self.state / "deploys.jsonl"

    @property
    def lock(self) -> Path:
        return self.state / "lock"

    @property
    def envs(self) -> Path:
        return self.state / "envs"

    @property
    def meta(self) -> Path:
        """One JSON file per complete release (full sha, ref, time); a release without one is unfinished."""
        return self.state / "meta"

    @property
    def settings(self) -> Path:
        return self.state / "deploy.json"

    @property
    def hook(self) -> Path:
        return self.state / "hook.py"

    @property
    def apps(self) -> Path:
        """The processes program (apps.py): units' ExecStart and the client's ps/logs/config."""
        return self.state / "apps.py"

    @property
    def config_env(self) -> Path:
        """The app's config (0600), outside every release."""
        return self.state / "config.env"

    @property
    def units_file(self) -> Path:
        """The processes whose systemd units this root installed."""
        return self.state / "units.json"

    @property
    def shared(self) -> Path:
        """deploy.shared dirs and files, linked into every release, never pruned."""
        return self.root / "shared"

    def release(self, name: str) -> Path:
        return self.releases / name

    def meta_file(self, name: str) -> Path:
        return self.meta / (name + ".json")

    def current_release(self) -> str | None:
        """The release name `current` points at, or None before the first deploy."""
        try:
            return os.path.basename(os.readlink(self.current))
        except OSError:
            return None


def release_name(sha: str, now: datetime.datetime) -> str:
    """`<UTC time to the ms>-<sha12>`: `ls releases/` shows deploy order and each commit at a glance."""
    return "%s.%03dZ-%s" % (now.strftime("%Y%m%dT%H%M%S"), now.microsecond // 1000, sha[:12])


# The client's side of the installed programs (sync's push and rollback, apps' ps/logs/config), beside
# the paths they use.
def hook_argv(root: str, *args: str, python: str = "python3") -> list:
    """argv to run the installed hook (`--deploy SHA`, `--rollback`, `--list`, `--status`) on the target."""
    return [python, "-S", str(Layout(Path(root)).hook), "--root", root, *args]  # -S: see install.py


def apps_argv(root: str, *args: str, python: str = "python3") -> list:
    """argv to run the installed apps.py (`ps`, `logs`, `restart`, `config-set`, ...) on the target."""
    return [python, "-S", str(Layout(Path(root)).apps), "--root", root, *args]
