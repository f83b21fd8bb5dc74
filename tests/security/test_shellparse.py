"""The command parser finds every program a line would run, and refuses what it cannot decide."""
from __future__ import annotations

import shlex

import pytest

from bridge.security.policy import BUILTIN_ROLES, Grant, check_command
from bridge.security.shellparse import UnparsableCommand, simple_commands

OPERATOR = Grant("ops", BUILTIN_ROLES["operator"], ("*",))
ADMIN = Grant("root", BUILTIN_ROLES["admin"], ("*",))

BYPASSES = [
    "sudo id",
    "ls; sudo id",
    "echo $(sudo id)",
    "echo `sudo id`",
    "env sudo id",
    "sh -c 'sudo id'",
    "/usr/bin/sudo id",
    "true | sudo id",
    "(sudo id)",
    "nice sudo id",
    "su -c id",
    "echo id | xargs sudo",
    "timeout 5 sudo id",
    """bash -c "sh -c 'nice sudo id'" """,
    "ls && sudo id",
    "ls || sudo id",
    "sudo id &",
    "ls\nsudo id",
    "{ sudo id; }",
    "if true; then sudo id; fi",
    "for i in 1; do sudo id; done",
    "while sudo id; do :; done",
    "f() { sudo id; }; f",
    "cat <(sudo id)",
    "echo x > $(sudo id)",
    'echo "$(sudo id)"',
    "x=$(sudo id)",
    "A=1 sudo id",
    '"su""do" id',
    "s\\udo id",
    "env -i PATH=/usr/bin sudo id",
    "env -S 'sudo id'",
    "bash -lc 'sudo id'",
    "timeout -s KILL -k 1 5 nohup nice -n 5 sudo id",
    "nice -5 sudo id",
    "stdbuf -o0 sudo id",
    "setsid -f sudo id",
    "exec sudo id",
    "command sudo id",
    "builtin eval 'sudo id'",
    "eval 'sudo id'",
    "find . -maxdepth 0 -exec sudo id \\;",
    "xargs -n1 -P2 sudo id",
    "script -qc 'sudo id' /dev/null",
    "flock /tmp/lock -c 'sudo id'",
    "flock /tmp/lock sudo id",
    "busybox sh -c 'sudo id'",
    "watch -n1 sudo id",
    "doas id",
    "pkexec id",
    "su - root -c id",
    "runuser -u root id",
    "sudo -u nobody -- id",
    "/bin/sh -c 'ls | /usr/bin/sudo -n id'",
    "dash -c 'eval \"sudo id\"'",
]

UNPARSABLE = [
    "$s id",
    "$(echo sudo) id",
    "`echo sudo` id",
    "$'\\x73udo' id",
    "echo ${x:-$(sudo id)}",
    "su?o id",
    "echo 'sudo id' | sh",
    "sh",
    "bash -s",
    "sh -c",
    'sh -c "$CMD"',
    "env $OPTS id",
    "timeout $T id",
    "echo 'unterminated",
    "",
    "   ",
    "case x in x) sudo id;; esac",
    "time sudo id",
    "nice --unknown-option id",
    "cat <<EOF\n$(sudo id)\nEOF\n",
]


@pytest.mark.parametrize("cmdline", BYPASSES)
def test_every_bypass_is_caught_as_sudo_for_operator(cmdline: str) -> None:
    decision = check_command(OPERATOR, cmdline)
    assert not decision.allowed, cmdline
    assert decision.rule == "operator.no-sudo", (cmdline, decision)


@pytest.mark.parametrize("cmdline", BYPASSES)
def test_admin_may_run_them(cmdline: str) -> None:
    assert check_command(ADMIN, cmdline).allowed, cmdline


@pytest.mark.parametrize("cmdline", UNPARSABLE)
def test_what_cannot_be_decided_is_refused(cmdline: str) -> None:
    with pytest.raises(UnparsableCommand):
        simple_commands(cmdline)
    decision = check_command(ADMIN, cmdline)
    assert (decision.allowed, decision.rule) == (False, "unparsable")


@pytest.mark.parametrize("cmdline", [
    "ls -la",
    "ls -la /tmp | grep x > out.txt 2>&1",
    "git status && git log --oneline | head -n 3",
    "echo 'sudo id'",
    "echo sudo",
    "grep -r sudo /etc/hosts",
    "python3 -c 'print(1)'",
    "cd /tmp && tar czf x.tgz .",
    "timeout 5 sleep 1",
    "env FOO=1 python3 app.py",
    "sh -c 'ls | wc -l'",
    "sh script.sh arg",
    "echo $HOME ~/x",
    "xargs -0 rm -f",
    "find . -name '*.py' -exec wc -l {} +",
])
def test_ordinary_commands_pass_for_operator(cmdline: str) -> None:
    assert check_command(OPERATOR, cmdline).allowed, cmdline


def test_wrappers_are_looked_through_in_order() -> None:
    found = simple_commands("timeout 5 env A=1 nice -n 3 /usr/bin/git status")
    assert [c.program for c in found] == ["timeout", "env", "nice", "git"]
    assert found[-1].argv == ("/usr/bin/git", "status")
    assert found[-1].via == ("timeout", "env", "nice")


def test_nested_shell_strings_are_parsed_recursively() -> None:
    found = simple_commands("""bash -c "sh -c 'eval \\"whoami\\"'" """)
    assert [c.program for c in found] == ["bash", "sh", "eval", "whoami"]


def test_nesting_too_deep_is_refused() -> None:
    line = "true"
    for _ in range(12):
        line = "sh -c " + shlex.quote(line)
    with pytest.raises(UnparsableCommand, match="nested"):
        simple_commands(line)


def test_env_operand_after_assignment_is_the_program() -> None:
    # GNU env stops option parsing at the first NAME=VALUE, so `-u` here is run as a program.
    assert [c.program for c in simple_commands("env -i A=1 -u B id")] == ["env", "-u"]
