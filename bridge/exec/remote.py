"""The command line a server runs for `bridge exec`: a few lines of POSIX sh, built only with shlex.

Assumptions about the server (DESIGN §5: a POSIX shell and Python 3, nothing else):
* the login shell runs our text with `-c`, as sshd does for every exec request;
* `exit $?` after the command keeps sh as the parent, so a command killed by signal N
  reports 128+N as a plain exit status (paramiko ignores the `exit-signal` message);
* timeouts are the runner's job (bridge.runners wraps this text to kill the whole tree);
* a folder the run should start in and cannot (a remote path never prepared, a wrong `--cwd`)
  stops the script before the command with exit 2 and a bridge-style error on stderr: `cd`
  failing silently would run the command in the login directory instead (`rm -rf build` there).
"""
from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence

from bridge.errors import UsageError
from bridge.runners.base import exports
from bridge.server.layout import RELEASE_BIN_DIRS
from bridge.targets import has_parent_step


def command_text(command: Sequence[str] | str) -> str:
    """One argument (or a str) is a shell line, as with ssh; several are argv, each quoted, never re-split."""
    if isinstance(command, str):
        return command
    if not command:
        raise UsageError("no command given", hint="put the command after `--`: bridge exec -- uname -a")
    return command[0] if len(command) == 1 else shlex.join(command)


def script(command: Sequence[str] | str, *, deploy_path: str = "", cwd: str | None = None,
           env: Mapping[str, str] | None = None, host: str = "") -> str:
    """The sh text that enters the directory, sets the deployment's environment and runs `command`.

    `host` names the target in the error the script prints when it cannot enter its folder.
    Raises UsageError for a `--cwd` that climbs with `..`.
    """
    deploy_path = deploy_path.rstrip("/")
    lines = [_enter(deploy_path, cwd, host), *_deploy_env(deploy_path), *exports(env or {})]
    return "\n".join([*filter(None, lines), command_text(command), "exit $?"])


def _enter(deploy_path: str, cwd: str | None, host: str) -> str:
    """Into `--cwd`, else the deployed `current`, else the login directory; a folder that is not there stops the run.

    The remote's own path must exist (`bridge init` and `bridge push` make it) even before the first deploy: a typo
    in the URL must not quietly run every command in the login directory.
    """
    if cwd:
        if has_parent_step(cwd):
            raise UsageError(f"--cwd {cwd} climbs with `..`", hint="give the folder's path without `..`")
        return f"cd -- {shlex.quote(cwd)} 2>/dev/null || " + _refuse(
            f"{host}: cannot enter --cwd {cwd} (missing, or not permitted); nothing was run",
            "check the path (a relative one starts in the login directory)")
    if deploy_path:
        missing = _refuse(f"{host}: remote path {deploy_path} does not exist; nothing was run",
                          "`bridge init` or a first `bridge push` makes it; else fix its url in bridge.yaml, or pass --cwd DIR")
        return f"[ -d {shlex.quote(deploy_path)} ] || {missing}\ncd -- {shlex.quote(deploy_path + '/current')} 2>/dev/null"
    return ""


def _refuse(message: str, hint: str) -> str:
    """sh that prints a bridge error and hint on stderr and exits 2 (usage or config error), as main() would."""
    lines = shlex.join([f"bridge: error: {message}", f"  hint: {hint}"])
    return "{ printf '%s\\n' " + lines + " >&2; exit 2; }"


def _deploy_env(deploy_path: str) -> list[str]:
    """The deployed release's program folders (venv bin, node_modules/.bin) first on PATH, VIRTUAL_ENV set,
    when they exist."""
    if not deploy_path:
        return []
    current = f"{deploy_path}/current"
    venv = shlex.quote(f"{current}/.venv")
    lines = [f"if [ -d {venv} ]; then VIRTUAL_ENV={venv}; export VIRTUAL_ENV; fi"]
    for folder in reversed(RELEASE_BIN_DIRS):
        path = shlex.quote(f"{current}/{folder}")
        lines.append(f"if [ -d {path} ]; then PATH={path}:$PATH; fi")
    return [*lines, "export PATH"]


def parse_env(pairs: Sequence[str]) -> dict[str, str]:
    """`K=V` strings from `--env` into a dict. Raises UsageError for a pair without `=`."""
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"--env {pair!r} has no `=`", hint="use --env NAME=VALUE")
        env[name] = value
    return env
