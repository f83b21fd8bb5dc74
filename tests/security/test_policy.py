"""Roles, policy files and workspace rules."""
from __future__ import annotations

from pathlib import Path

import pytest

from bridge.errors import ConfigError
from bridge.security.policy import BUILTIN_ROLES, Grant, Policy, check_command, check_permission, check_repo, \
    load_policy, parse_policy


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_builtin_roles_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRIDGE_POLICY", raising=False)
    policy = load_policy() if not Path("/etc/bridge/policy.yaml").exists() else Policy()
    viewer, operator, admin = (policy.grant("u", r) for r in ("viewer", "operator", "admin"))
    assert not check_command(viewer, "ls").allowed and check_command(viewer, "ls").rule == "viewer.no-exec"
    assert check_permission(viewer, "pull").allowed and not check_permission(viewer, "push").allowed
    assert check_command(operator, "ls").allowed and not check_command(operator, "sudo ls").allowed
    assert not check_permission(operator, "forward").allowed and check_permission(operator, "shell").allowed
    assert check_command(admin, "sudo ls").allowed and check_permission(admin, "tunnel").allowed


def test_unknown_user_is_refused() -> None:
    assert Policy().grant("nobody") is None
    decision = check_command(None, "ls")
    assert (decision.allowed, decision.rule) == (False, "unknown-user")


def test_file_roles_users_and_deny_wins(tmp_path: Path) -> None:
    policy = parse_policy(write(tmp_path, """
roles:
  deployer:
    permissions: [exec, push, pull]
    allow: [git, "python*", ls, /opt/tools/*]
    deny: [python2*]
users:
  alice: deployer
  bob: {role: operator, workspaces: [/srv/bob*]}
"""))
    alice = policy.grant("alice", key_role="admin")
    assert alice.role.name == "deployer", "the policy's users map binds over the key line"
    assert check_command(alice, "git status && python3 -m app").allowed
    denied = check_command(alice, "python2.7 -V")
    assert (denied.allowed, denied.rule) == (False, "deployer.deny[python2*]")
    assert check_command(alice, "cat x").rule == "deployer.allow"
    assert check_command(alice, "/opt/tools/run").allowed and not check_command(alice, "/usr/bin/run").allowed
    assert policy.grant("bob").workspaces == ("/srv/bob*",)
    assert policy.grant("carol", key_role="viewer").role.name == "viewer"


def test_workspaces_limit_git(tmp_path: Path) -> None:
    (tmp_path / "srv/app/repo.git").mkdir(parents=True)
    (tmp_path / "srv/other/repo.git").mkdir(parents=True)
    grant = Grant("bob", BUILTIN_ROLES["operator"], (str(tmp_path / "srv/app"),))
    home = str(tmp_path)
    assert check_repo(grant, "git-receive-pack", str(tmp_path / "srv/app/repo.git"), home).allowed
    assert check_repo(grant, "git-upload-pack", "srv/app/repo.git", home).allowed
    escape = check_repo(grant, "git-receive-pack", "srv/app/../other/repo.git", home)
    assert (escape.allowed, escape.rule) == (False, "operator.workspaces")
    (tmp_path / "srv/app/link.git").symlink_to(tmp_path / "srv/other/repo.git")
    assert not check_repo(grant, "git-receive-pack", "srv/app/link.git", home).allowed
    viewer = Grant("v", BUILTIN_ROLES["viewer"], ("*",))
    assert check_repo(viewer, "git-upload-pack", "srv/app/repo.git", home).allowed
    assert check_repo(viewer, "git-receive-pack", "srv/app/repo.git", home).rule == "viewer.no-push"


@pytest.mark.parametrize("text, where", [
    ("roles:\n  x:\n    permissions: [exec, fly]\n", ":3: roles.x.permissions: unknown permission 'fly'"),
    ("users:\n  a: b\n  c: ghost\n", ":3: users.c: unknown role 'ghost'"),
    ("roles:\n  x:\n    alow: [ls]\n", ":3: roles.x.alow: unknown key"),
    ("rolez: {}\n", ":1: rolez: unknown key"),
    ("roles: [a]\n", ":1: roles: must be a mapping"),
])
def test_errors_name_file_line_and_key(tmp_path: Path, text: str, where: str) -> None:
    path = write(tmp_path, text.replace("a: b", "a: viewer"))
    with pytest.raises(ConfigError) as err:
        parse_policy(path)
    assert str(err.value).startswith(str(path)) and where in str(err.value), str(err.value)


def test_missing_policy_fails_closed_and_the_environment_names_none(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="cannot read policy"):
        load_policy(tmp_path / "absent.yaml")
    monkeypatch.setenv("BRIDGE_POLICY", str(write(tmp_path, "users: {eve: admin}\n")))
    assert "eve" not in load_policy().users, "a policy named by the environment must not bind"


def test_git_needs_a_granted_workspace_and_the_key_narrows_the_policy(tmp_path: Path) -> None:
    home, app, other = str(tmp_path), str(tmp_path / "srv/app"), str(tmp_path / "srv/other")
    operator = BUILTIN_ROLES["operator"]
    bare = Policy().grant("u", "operator")
    assert bare.workspaces == () and bare.key_workspaces == ()
    refused = check_repo(bare, "git-upload-pack", f"{app}/repo.git", home)
    assert (refused.allowed, refused.rule) == (False, "operator.workspaces") and "no workspace" in refused.reason
    keyed = Policy().grant("u", "operator", (app,))
    assert check_repo(keyed, "git-upload-pack", f"{app}/repo.git", home).allowed
    assert not check_repo(keyed, "git-upload-pack", f"{other}/repo.git", home).allowed
    both = Grant("u", operator, (str(tmp_path / "srv/*"),), (app,))
    assert check_repo(both, "git-receive-pack", f"{app}/repo.git", home).allowed
    assert not check_repo(both, "git-receive-pack", f"{other}/repo.git", home).allowed, "the key narrows the policy"


def test_run_as_and_env_on_roles_and_users(tmp_path: Path) -> None:
    policy = parse_policy(write(tmp_path, """
roles:
  worker: {permissions: [exec], run_as: deploy, env: [APP_*]}
users:
  ann: {role: worker, run_as: ann}
  ben: worker
"""))
    assert policy.grant("ann").run_as == "ann" and policy.grant("ben").run_as == "deploy"
    assert policy.roles["worker"].env == ("APP_*",)
    with pytest.raises(ConfigError, match="run_as: must name an unprivileged"):
        parse_policy(write(tmp_path, "users:\n  x: {role: operator, run_as: root}\n"))


ALLOW_LIST = """
roles:
  boxed:
    permissions: [exec, sandbox_only]
    allow: [ls, cat, wc, awk, git, find, xargs, python3, sh, less, "perl *"]
"""


@pytest.mark.parametrize("cmdline, rule", [
    ("awk 'BEGIN{system(\"rm -rf /tmp/x\")}'", "boxed.allow"),
    ("awk 'BEGIN{system(c)}'", "boxed.allow"),
    ("awk -f prog.awk data", "boxed.allow"),
    ("git -c core.hooksPath=/tmp/hooks commit -m x", "boxed.allow"),
    ("git -c core.pager='tee /tmp/x' log", "boxed.allow"),
    ("git -c alias.x='!rm -rf .' x", "boxed.allow"),
    ("python3 app.py", "boxed.allow"),
    ("python3 -c 'print(1)'", "boxed.allow"),
    ("sh script.sh", "boxed.allow"),
    ("less '+!id' x", "boxed.allow"),
    ("LD_PRELOAD=/tmp/x.so ls", "boxed.allow"),
    ("perl -e 'system(\"sudo id\")'", "boxed.no-sudo"),
])
def test_allow_list_roles_refuse_what_runs_unlisted_or_unreadable_code(tmp_path: Path, cmdline: str, rule: str) -> None:
    grant = parse_policy(write(tmp_path, ALLOW_LIST)).grant("u", key_role="boxed")
    decision = check_command(grant, cmdline)
    assert (decision.allowed, decision.rule) == (False, rule), (cmdline, decision)


@pytest.mark.parametrize("cmdline", [
    "awk '{print $1}' data | wc -l",
    "find . -name '*.py' -exec cat {} +",
    "ls | xargs cat",
    "git -c core.pager=less log",
    "sh -c 'ls | wc -l'",
    "perl -ne 'print if /x/' data",
])
def test_allow_list_roles_run_what_is_listed(tmp_path: Path, cmdline: str) -> None:
    grant = parse_policy(write(tmp_path, ALLOW_LIST)).grant("u", key_role="boxed")
    assert check_command(grant, cmdline).allowed, (cmdline, check_command(grant, cmdline))


def test_code_forms_need_an_explicit_allow(tmp_path: Path) -> None:
    policy = parse_policy(write(tmp_path, "roles:\n  py: {permissions: [exec], allow: [\"python3 *\"]}\n"))
    grant = policy.grant("u", key_role="py")
    assert check_command(grant, "python3 -c 'print(1)'").allowed
    refused = check_command(grant, "python3 -c 'import os; os.system(\"doas id\")'")
    assert (refused.allowed, refused.rule) == (False, "py.no-sudo")
    operator = policy.grant("u", key_role="operator")
    assert check_command(operator, "python3 -c 'print(1)'").allowed, "allow: ['*'] allows every form"
