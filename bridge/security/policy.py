"""Roles, permissions and command rules: the decision of who may do what.

Built-in roles work with no file: viewer (status, pull, read the audit), operator (exec,
shell, push, pull; no sudo, no port forwarding), admin (everything). A policy file
(`/etc/bridge/policy.yaml`, or the `--policy` written into the key's guard line) adds or
replaces roles and maps users to them:

    roles:
      deployer: {permissions: [push, pull, exec], allow: [git, "python*"], deny: [rm],
                 workspaces: ["/srv/app*"], run_as: deploy, env: [APP_*]}
    users:
      alice: operator
      bob: {role: deployer, workspaces: [/srv/app], run_as: bob}

Command rules are globs on program names (or absolute paths); deny wins over allow. A program
handed code the rules cannot read (`python3 -c`, a script file, git `-c core.hooksPath`, awk's
`system(cmd)`) is matched as `PROGRAM FORM`: `python3 -c`, `sh FILE`, `awk system()`. So a role
listing `awk` may run awk programs, `awk *` also ones that start commands, and `*` anything
(a rule `PROGRAM FORM` also lists PROGRAM itself).
Changing PATH needs `sudo`, except putting a granted deployment's own `current/.venv/bin` or
`current/node_modules/.bin` first, as `bridge exec` does.
The rules are an early, friendly refusal, not the boundary: the kernel and the account are
(`run_as`, and no_new_privs for every role without `sudo`: bridge.security.confine). Git may
touch only the workspaces granted on the key (`keys add --workspace`) and by the policy; none
by default.
"""
from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bridge.errors import ConfigError
from bridge.server.layout import RELEASE_BIN_DIRS
from bridge.security.shellparse import SimpleCommand, UnparsableCommand, simple_commands

SYSTEM_POLICY = Path("/etc/bridge/policy.yaml")
PERMISSIONS = frozenset({"status", "pull", "push", "exec", "shell", "sudo", "tunnel", "forward", "keys",
                         "audit", "sandbox_only", "files"})
# Characters that make a PATH entry computed at run time (a variable, a command, a glob).
_COMPUTED = re.compile(r"[$`*?\[\]\\]")
# The PATH entries a role without sudo may add: a deployment's release programs (bridge exec's prelude).
_RELEASE_BINS = tuple(f"/current/{folder}" for folder in RELEASE_BIN_DIRS)
# Programs that change user: allowed only to roles holding the `sudo` permission.
PRIVILEGE_PROGRAMS = ("sudo", "sudoedit", "su", "doas", "pkexec", "runuser", "run0", "ksu", "newgrp", "sg")
# A privilege program named in code the rules cannot read (`os.system("sudo id")`, vim's `:!sudo id`).
_NAMES_PRIVILEGE = re.compile(rf"(?<![\w.-])(?:[\w./-]*/)?(?:{'|'.join(PRIVILEGE_PROGRAMS)})(?![\w.-])")
GIT_ACTIONS = {"git-receive-pack": "push", "git-upload-pack": "pull", "git-upload-archive": "pull"}


@dataclass(frozen=True)
class Role:
    """A named set of permissions, command rules and workspace globs."""

    name: str
    permissions: frozenset[str]
    allow: tuple[str, ...] = ("*",)
    deny: tuple[str, ...] = ()
    workspaces: tuple[str, ...] = ()
    run_as: str | None = None
    env: tuple[str, ...] = ()

    def may(self, permission: str) -> bool:
        """True when the role holds `permission`."""
        return permission in self.permissions


@dataclass(frozen=True)
class Grant:
    """A user's role, the workspaces the policy and the key grant, and the account a root login runs as."""

    user: str
    role: Role
    workspaces: tuple[str, ...]
    key_workspaces: tuple[str, ...] = ()
    run_as: str | None = None


@dataclass(frozen=True)
class UserEntry:
    """One `users:` entry: the role it binds, and what it overrides of that role."""

    role: str
    workspaces: tuple[str, ...] | None = None
    run_as: str | None = None


@dataclass(frozen=True)
class Decision:
    """The outcome of a check: allowed or not, the rule that decided, and why."""

    allowed: bool
    rule: str
    reason: str = ""


BUILTIN_ROLES: Mapping[str, Role] = {
    "viewer": Role("viewer", frozenset({"status", "pull", "audit"})),
    "operator": Role("operator", frozenset({"status", "pull", "push", "exec", "shell", "audit"})),
    "admin": Role("admin", PERMISSIONS - {"sandbox_only"}),
}


@dataclass(frozen=True)
class Policy:
    """Roles and user grants; `source` says which file (or the built-ins) they came from."""

    roles: Mapping[str, Role] = field(default_factory=lambda: dict(BUILTIN_ROLES))
    users: Mapping[str, UserEntry] = field(default_factory=dict)
    source: str = "built-in"

    def grant(self, user: str, key_role: str | None = None, key_workspaces: tuple[str, ...] = ()) -> Grant | None:
        """The user's grant: the policy's mapping binds; else the role on their key line; else None."""
        entry = self.users.get(user, UserEntry(key_role or ""))
        role = self.roles.get(entry.role)
        if role is None:
            return None
        workspaces = entry.workspaces if entry.workspaces is not None else role.workspaces
        return Grant(user, role, workspaces, key_workspaces, entry.run_as or role.run_as)


def load_policy(path: str | os.PathLike[str] | None = None) -> Policy:
    """The binding policy: `path`, else `/etc/bridge/policy.yaml`, else built-ins; raises ConfigError.

    Never from the environment: the guard's settings come from root-owned places only.
    """
    if path:
        return parse_policy(Path(path))
    return parse_policy(SYSTEM_POLICY) if SYSTEM_POLICY.exists() else Policy()


def parse_policy(path: Path) -> Policy:
    """Read and validate one policy file; errors name the file, line and key."""
    import yaml

    try:
        text = path.read_text()
        data = yaml.safe_load(text) or {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read policy: {e.strerror}", hint="pass --policy a readable file") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    return _PolicyReader(path, text).build(data)


class _PolicyReader:
    """Turns a policy file's data into a Policy, reporting errors with file:line:key."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text

    def fail(self, keys: tuple[str, ...], message: str, hint: str = "") -> ConfigError:
        """A ConfigError pointing at the line of `keys` in the file."""
        line = _line_of(self.text, keys)
        where = f"{self.path}:{line}" if line else str(self.path)
        return ConfigError(f"{where}: {'.'.join(keys)}: {message}", hint=hint)

    def build(self, data: object) -> Policy:
        """Validate the top level and build the Policy."""
        if not isinstance(data, dict):
            raise self.fail((), "the policy must be a mapping with `roles:` and `users:`")
        unknown = set(data) - {"roles", "users"}
        if unknown:
            raise self.fail((sorted(unknown)[0],), "unknown key", hint="allowed keys: roles, users")
        roles = dict(BUILTIN_ROLES)
        for name, spec in self.mapping(data.get("roles"), ("roles",)).items():
            roles[str(name)] = self.role(str(name), spec)
        users = {str(u): self.user(str(u), spec, roles) for u, spec in self.mapping(data.get("users"), ("users",)).items()}
        return Policy(roles, users, str(self.path))

    def mapping(self, value: object, keys: tuple[str, ...]) -> dict:
        """`value` as a dict (None is empty), else an error."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(keys, "must be a mapping")
        return value

    def strings(self, value: object, keys: tuple[str, ...]) -> tuple[str, ...]:
        """`value` as a tuple of strings (one string is a list of one), else an error."""
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise self.fail(keys, "must be a list of strings")
        return tuple(items)

    def role(self, name: str, spec: object) -> Role:
        """One role entry."""
        keys = ("roles", name)
        spec = self.mapping(spec, keys)
        extra = set(spec) - {"permissions", "allow", "deny", "workspaces", "run_as", "env"}
        if extra:
            raise self.fail(keys + (sorted(extra)[0],), "unknown key",
                            hint="use permissions, allow, deny, workspaces, run_as, env")
        perms = self.strings(spec.get("permissions", []), keys + ("permissions",))
        bad = sorted(set(perms) - PERMISSIONS)
        if bad:
            raise self.fail(keys + ("permissions",), f"unknown permission {bad[0]!r}",
                            hint=f"known: {', '.join(sorted(PERMISSIONS))}")
        return Role(name, frozenset(perms),
                    self.strings(spec.get("allow", ["*"]), keys + ("allow",)),
                    self.strings(spec.get("deny", []), keys + ("deny",)),
                    self.strings(spec.get("workspaces", []), keys + ("workspaces",)),
                    self.account(spec.get("run_as"), keys + ("run_as",)),
                    self.strings(spec.get("env", []), keys + ("env",)))

    def account(self, value: object, keys: tuple[str, ...]) -> str | None:
        """A `run_as` account name (checked against passwd where it is used), else an error."""
        if value is None:
            return None
        if not isinstance(value, str) or not value or value == "root":
            raise self.fail(keys, "must name an unprivileged login account", hint="run_as: deploy")
        return value

    def user(self, user: str, spec: object, roles: Mapping[str, Role]) -> UserEntry:
        """One user entry: a role name, or {role, workspaces, run_as}."""
        keys = ("users", user)
        if isinstance(spec, str):
            spec = {"role": spec}
        spec = self.mapping(spec, keys)
        extra = set(spec) - {"role", "workspaces", "run_as"}
        if extra:
            raise self.fail(keys + (sorted(extra)[0],), "unknown key", hint="use role, workspaces, run_as")
        role = spec.get("role")
        if not isinstance(role, str) or role not in roles:
            raise self.fail(keys, f"unknown role {role!r}", hint=f"roles: {', '.join(sorted(roles))}")
        ws = spec.get("workspaces")
        return UserEntry(role, None if ws is None else self.strings(ws, keys + ("workspaces",)),
                         self.account(spec.get("run_as"), keys + ("run_as",)))


def _line_of(text: str, keys: tuple[str, ...]) -> int | None:
    """1-based line of the nested mapping key `keys` in YAML `text`, when it can be found."""
    import yaml

    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for key in keys:
        match = _find_key(node, key)
        if match is None:
            break
        line, node = match[0].start_mark.line + 1, match[1]
    return line


def _find_key(node: object, key: str):
    """The (key node, value node) pair for `key` in a composed YAML mapping node, or None."""
    for k, v in getattr(node, "value", []) if getattr(node, "id", "") == "mapping" else []:
        if k.value == key:
            return k, v
    return None


def check_permission(grant: Grant | None, permission: str) -> Decision:
    """Whether the user's role holds `permission` (unknown users hold nothing)."""
    if grant is None:
        return Decision(False, "unknown-user", "no role for this user in the policy or on the key")
    if grant.role.may(permission):
        return Decision(True, f"{grant.role.name}.{permission}")
    return Decision(False, f"{grant.role.name}.no-{permission}", f"role {grant.role.name} may not {permission}")


def check_command(grant: Grant | None, cmdline: str) -> Decision:
    """Whether the user may run `cmdline`: exec permission, then every program it would start."""
    decision = check_permission(grant, "exec")
    if grant is None or not decision.allowed:  # None is never allowed
        return decision
    try:
        commands = simple_commands(cmdline)
    except UnparsableCommand as e:
        refused = [v for v in (check_program(grant.role, cmd) for cmd in e.found) if not v.allowed]
        return refused[0] if refused else Decision(False, "unparsable", str(e))
    for cmd in commands:
        verdict = Decision(True, f"{grant.role.name}.workspaces") if _extends_path_into_workspaces(grant, cmd) \
            else check_program(grant.role, cmd)
        if not verdict.allowed:
            return verdict
    return decision


def _extends_path_into_workspaces(grant: Grant, cmd: SimpleCommand) -> bool:
    """`PATH=DIR[:DIR...]:$PATH` where every DIR is a literal absolute `ROOT/current/.venv/bin` (or
    `node_modules/.bin`) inside the granted workspaces.

    That is how `bridge exec` puts a deployment's own programs first: the folders are the user's own
    release, which they may push code into and run anyway, so a role without sudo may name them.
    Any other PATH change still needs sudo (_check_path)."""
    if cmd.kind != "path":
        return False
    entries = cmd.argv[0].partition("=")[2].split(":")
    if entries[-1] not in ("$PATH", "${PATH}") or len(entries) < 2:
        return False
    folders = entries[:-1]
    if not all(folder.startswith("/") and not _COMPUTED.search(folder) and ".." not in folder.split("/")
               and folder.endswith(_RELEASE_BINS) for folder in folders):
        return False
    scopes = [scope for scope in (grant.key_workspaces, grant.workspaces) if scope]
    return bool(scopes) and all(any(_within(resolve_repo(folder, "/"), os.path.expanduser(g)) for g in scope)
                                for scope in scopes for folder in folders)


def check_program(role: Role, cmd: SimpleCommand) -> Decision:
    """One program against the role: the sudo permission, then deny rules, then allow rules."""
    where = f"{cmd.program!r}" + (f" (behind {' '.join(cmd.via)})" if cmd.via else "")
    if cmd.kind == "path":
        return _check_path(role, cmd, where)
    if cmd.kind == "code":
        return _check_code(role, cmd, where)
    names = (cmd.program, cmd.argv[0])
    if cmd.program in PRIVILEGE_PROGRAMS and not role.may("sudo"):
        return Decision(False, f"{role.name}.no-sudo", f"{where} changes user; role {role.name} lacks sudo")
    for pattern in role.deny:
        if _matches(names, pattern):
            return Decision(False, f"{role.name}.deny[{pattern}]", f"{where} is denied")
    if not any(_matches(names, pattern.split(" ", 1)[0]) for pattern in role.allow):  # `perl *` lists perl
        return Decision(False, f"{role.name}.allow", f"{where} is not in the allow list")
    return Decision(True, f"{role.name}.allow")


def _check_path(role: Role, cmd: SimpleCommand, where: str) -> Decision:
    """Setting PATH (or git's exec path) lets a harmless-looking name run sudo: sudo roles only."""
    if role.may("sudo"):
        return Decision(True, f"{role.name}.sudo")
    return Decision(False, f"{role.name}.no-sudo", f"{cmd.argv[0]!r} changes what program names run; "
                                                  f"role {role.name} lacks sudo (write programs by full path)")


def _check_code(role: Role, cmd: SimpleCommand, where: str) -> Decision:
    """Code the rules cannot read: refused when it names a privilege program, else allowed only
    when an allow rule matches `PROGRAM FORM` (the program itself passed its own check already)."""
    form = f"{where} {cmd.form}"
    if not role.may("sudo") and _NAMES_PRIVILEGE.search(cmd.code):
        return Decision(False, f"{role.name}.no-sudo", f"{form} names a program that changes user; "
                                                      f"role {role.name} lacks sudo")
    names = (f"{cmd.program} {cmd.form}", f"{cmd.argv[0]} {cmd.form}")
    if not any(_matches(names, pattern) for pattern in role.allow):
        return Decision(False, f"{role.name}.allow", f"{form} runs code the rules cannot read; allow "
                                                    f"'{cmd.program} {cmd.form}' (or '{cmd.program} *') to permit it")
    return Decision(True, f"{role.name}.allow")


def _matches(names: tuple[str, str], pattern: str) -> bool:
    """A glob with a slash matches the path as typed; one without matches the program name."""
    return fnmatch.fnmatchcase(names[1] if "/" in pattern else names[0], pattern)


def check_repo(grant: Grant | None, action: str, repo_path: str, home: str) -> Decision:
    """Whether a git push/pull may touch `repo_path` (resolved under `home`): inside what the key and the
    policy grant (both, when both list workspaces); nothing when neither does."""
    decision = check_permission(grant, GIT_ACTIONS[action])
    if grant is None or not decision.allowed:  # None is never allowed
        return decision
    path = resolve_repo(repo_path, home)
    scopes = [scope for scope in (grant.key_workspaces, grant.workspaces) if scope]
    if not scopes:
        return Decision(False, f"{grant.role.name}.workspaces",
                        "no workspace is granted to this key (bridge keys add ... --workspace PATH)")
    for scope in scopes:
        if not any(_within(path, os.path.expanduser(g)) for g in scope):
            return Decision(False, f"{grant.role.name}.workspaces", f"{path} is outside the workspaces {list(scope)}")
    return decision


def resolve_repo(repo_path: str, home: str) -> str:
    """The real absolute path git will open: `~` and relative paths are under home, symlinks followed."""
    path = os.path.expanduser(repo_path) if repo_path.startswith("~") else repo_path
    return os.path.realpath(os.path.join(home, path))


def _within(path: str, pattern: str) -> bool:
    """True when `path` or one of its parent folders matches the workspace glob."""
    candidate = Path(path)
    return any(fnmatch.fnmatchcase(str(p), pattern) for p in (candidate, *candidate.parents) if str(p) != "/")
