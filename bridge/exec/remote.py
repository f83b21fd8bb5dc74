"""The command line a server runs for `bridge exec`: a few lines of POSIX sh, built only with shlex.

Assumptions about the server (DESIGN §5: a POSIX shell and Python 3, nothing else):
* the login shell runs our text with `-c`, as sshd does for every exec request;
* `exit $?` after the command keeps sh as the parent, so a command killed by signal N
  reports 128+N as a plain exit status (paramiko ignores the `exit-signal` message);
* timeouts are the runner's job (bridge.runners wraps this text to kill the whole tree).
"""
from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence

from bridge.errors import UsageError

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")



def command_text(command: Sequence[str] | str) -> str:
    """One argument (or a str) is a shell line, as with ssh; several are argv, each quoted, never re-split."""
    if isinstance(command, str):
        return command
    if not command:
        raise UsageError("no command given", hint="put the command after `--`: bridge exec -- uname -a")
    return command[0] if len(command) == 1 else shlex.join(command)


def script(command: Sequence[str] | str, *, deploy_path: str = "", cwd: str | None = None,
           env: Mapping[str, str] | None = None) -> str:
    """The sh text that enters the directory, sets the deployment's environment and runs `command`."""
    deploy_path = deploy_path.rstrip("/")
    lines = [_enter(deploy_path, cwd), *_deploy_env(deploy_path), *_exports(env or {})]
    return "\n".join([*filter(None, lines), command_text(command), "exit $?"])


def _enter(deploy_path: str, cwd: str | None) -> str:
    """`--cwd` must exist; the default is the deployed `current`, else the login directory."""
    if cwd:
        return f"cd -- {shlex.quote(cwd)} || exit 1"
    if deploy_path:
        return f"cd -- {shlex.quote(deploy_path + '/current')} 2>/dev/null"
    return ""


def _deploy_env(deploy_path: str) -> list[str]:
    """The deployed venv's bin and node_modules/.bin first on PATH, VIRTUAL_ENV set, when they exist."""
    if not deploy_path:
        return []
    venv = shlex.quote(f"{deploy_path}/current/.venv")
    node = shlex.quote(f"{deploy_path}/current/node_modules/.bin")
    return [f"if [ -d {venv}/bin ]; then VIRTUAL_ENV={venv}; export VIRTUAL_ENV; PATH={venv}/bin:$PATH; fi",
            f"if [ -d {node} ]; then PATH={node}:$PATH; fi", "export PATH"]


def _exports(env: Mapping[str, str]) -> list[str]:
    """`export K='v'` per variable: works where sshd has no AcceptEnv, any bytes in the value."""
    for name in env:
        if not _ENV_NAME.match(name):
            raise UsageError(f"invalid environment variable name {name!r}", hint="use --env NAME=VALUE")
    return [f"export {name}={shlex.quote(value)}" for name, value in env.items()]


def parse_env(pairs: Sequence[str]) -> dict[str, str]:
    """`K=V` strings from `--env` into a dict. Raises UsageError for a pair without `=`."""
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"--env {pair!r} has no `=`", hint="use --env NAME=VALUE")
        env[name] = value
    return env
