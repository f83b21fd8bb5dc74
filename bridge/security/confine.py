"""How everything the guard starts is confined: by the kernel and the account, not by the parser.

For a role without the `sudo` permission, each child gets `no_new_privs` before it execs
(`prctl(PR_SET_NO_NEW_PRIVS)`, the flag behind systemd's `NoNewPrivileges=` and Docker's
`no-new-privileges`): from then on no setuid or file-capability program (sudo, su, pkexec,
newgrp, or any copy or link of them) can raise privilege, whatever the command line was,
and the flag is inherited by every descendant and cannot be cleared. On a root login such a
role also becomes its `run_as` account first (supplementary groups, gid, uid).

The child sees only an allow-listed environment: what the client sends (sshd's AcceptEnv,
`ssh -o SetEnv`) can set a terminal and a locale, never a loader, shell or interpreter hook.
"""
from __future__ import annotations

import ctypes
import fnmatch
import os
import pwd
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PR_SET_NO_NEW_PRIVS = 38  # <linux/prctl.h>
# Client variables any command may see: a terminal, a locale, a time zone, where the client is.
CLIENT_ENV = ("TERM", "LANG", "LANGUAGE", "LC_*", "TZ", "COLORTERM", "SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY")
# Never passed, whatever a policy allows: each makes a shell, loader or interpreter run code.
NEVER_ENV = ("BASH_ENV", "ENV", "BASH_FUNC_*", "SHELLOPTS", "BASHOPTS", "PS4", "IFS", "CDPATH", "GLOBIGNORE",
             "PROMPT_COMMAND", "GIT_*", "LD_*", "PYTHON*", "PERL*", "RUBY*", "NODE_OPTIONS", "JAVA_TOOL_OPTIONS",
             "GCONV_PATH", "LOCPATH", "HOSTALIASES", "RESOLV_*", "MALLOC_*", "BRIDGE_*", "SSH_AUTH_SOCK",
             "PATH", "HOME", "USER", "LOGNAME", "SHELL")
# git's wire-protocol selector (`version=2`) is data, not a hook: let it through when it looks like one.
_GIT_PROTOCOL = re.compile(r"^[A-Za-z0-9=:._-]{1,64}$")
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Account:
    """A login account as passwd knows it: who a child runs as."""

    name: str
    uid: int
    gid: int
    home: str
    shell: str


def account_by_name(name: str) -> Account | None:
    """The passwd entry of `name`, None when there is no such account."""
    try:
        return _account(pwd.getpwnam(name))
    except KeyError:
        return None


def current_account() -> Account:
    """The account this process runs as (from passwd, never from $HOME or $USER)."""
    try:
        return _account(pwd.getpwuid(os.getuid()))
    except KeyError:
        return Account(str(os.getuid()), os.getuid(), os.getgid(), "/", "/bin/sh")


def _account(entry: pwd.struct_passwd) -> Account:
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, entry.pw_shell or "/bin/sh")


@dataclass(frozen=True)
class Confinement:
    """Who a child runs as, whether it may ever gain privilege, and the environment it gets.

    `switch` is True when the guard (root) must become `account` in the child; otherwise the
    child stays the login account, which `account` describes.
    """

    account: Account
    switch: bool
    no_new_privs: bool
    env: Mapping[str, str] = field(default_factory=dict)


def drop_privilege(confinement: Confinement) -> None:
    """In the child, just before exec: become the account, then set no_new_privs; raises OSError.

    The one helper for everything the guard starts (subprocess preexec_fn, a forked PTY child,
    the sftp server): a failure must stop the exec, never run the child unconfined.
    """
    if confinement.switch:
        target = confinement.account
        os.initgroups(target.name, target.gid)
        os.setgid(target.gid)
        os.setuid(target.uid)
        if os.getuid() != target.uid or os.geteuid() != target.uid:
            raise PermissionError(f"still uid {os.geteuid()} after setuid({target.uid})")
        try:
            os.chdir(target.home)
        except OSError:
            os.chdir("/")
    if confinement.no_new_privs:
        set_no_new_privs()


def set_no_new_privs() -> None:
    """prctl(PR_SET_NO_NEW_PRIVS, 1): execve never grants privilege to this process again; raises OSError."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(err)}")


def child_env(client: Mapping[str, str], account: Account, allowed: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment a command gets: the account's own variables, a fixed PATH, and allow-listed client ones.

    `allowed` adds the policy's globs to CLIENT_ENV; NEVER_ENV wins over both.
    """
    env = {name: value for name, value in client.items() if _passes(name, value, (*CLIENT_ENV, *allowed))}
    env.update(HOME=account.home, USER=account.name, LOGNAME=account.name, SHELL=account.shell,
               PATH=ROOT_PATH if account.uid == 0 else SAFE_PATH)
    return env


def _passes(name: str, value: str, allowed: tuple[str, ...]) -> bool:
    """True when a client variable may reach the command."""
    if name == "GIT_PROTOCOL":
        return bool(_GIT_PROTOCOL.match(value))
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in NEVER_ENV):
        return False
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in allowed)


def editable_by_others(path: Path) -> tuple[Path, str] | None:
    """The first of `path` and the folders above it that someone besides root may change, and who.

    None when only root can: what a file the guard trusts (its key line, its policy) must be,
    or the account it confines could rewrite its own limits. Raises OSError when unreadable.
    """
    for chain in dict.fromkeys((path.absolute(), path.absolute().resolve())):
        for part in (chain, *chain.parents):
            who = _writer(part)
            if who:
                return part, who
    return None


def _writer(path: Path) -> str:
    """Who besides root may change `path` (empty: nobody, or it does not exist yet); raises OSError."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return ""
    if st.st_uid != 0:
        return f"its owner (uid {st.st_uid})"
    if stat.S_ISLNK(st.st_mode) or (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX):
        return ""  # a root symlink cannot be changed; in a sticky folder only an entry's owner may replace it
    if st.st_mode & stat.S_IWOTH:
        return "everyone"
    if st.st_mode & stat.S_IWGRP and st.st_gid != 0:
        return f"group {st.st_gid}"
    return ""
