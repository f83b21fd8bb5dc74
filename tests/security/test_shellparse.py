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
    "echo id | xargs -n1 sudo id",
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
    "echo id | xargs sudo",
    "sh -",
    ". /dev/stdin",
    "{sudo,id}",
    "env -S 'sudo\\_id'",
    "cat <<E\"O\"F\nEOF\nsudo id\nE\"O\"F\n",
    "find / -exec {} \\;",
    "GIT_SSH_COMMAND=\"$X\" git fetch",
]


# Forms of issue #12 that got past the rules, by class: each is refused for an operator with the
# rule that says why (no-sudo: a privilege program found, named in code, or PATH changed;
# unparsable: what runs is decided at run time), and (no-sudo ones) still allowed for an admin.
NO_SUDO = "operator.no-sudo"
UNPARSABLE_RULE = "unparsable"
CLASSES: dict[str, list[tuple[str, str]]] = {
    "runs other programs": [
        ("find /usr/bin -name sudo -exec {} id \\;", UNPARSABLE_RULE),
        ("find . -name x -execdir sh -c 'echo {}' \\;", UNPARSABLE_RULE),
        ("awk 'BEGIN{system(\"sudo id\")}'", NO_SUDO),
        ("gawk 'BEGIN{print \"id\" | \"sudo tee /tmp/x\"}'", NO_SUDO),
        ("mawk 'BEGIN{\"sudo id\" | getline x; print x}'", NO_SUDO),
        ("awk 'BEGIN{c=\"su\" \"do id\"; system(c)}'", NO_SUDO),
        ("echo sudo id | xargs env", UNPARSABLE_RULE),
        ("echo sudo id | xargs nice", UNPARSABLE_RULE),
        ("echo x | xargs -I{} sh -c 'echo {}'", UNPARSABLE_RULE),
        ("echo /usr/bin/sudo | xargs -I % % id", UNPARSABLE_RULE),
        ("git -c alias.x='!sudo id' x", NO_SUDO),
        ("git -c core.pager='sudo sh -c id' log", NO_SUDO),
        ("git -c core.fsmonitor='sudo id' status", NO_SUDO),
        ("git -c core.sshCommand='sudo ssh' fetch", NO_SUDO),
        ("git config alias.y '!sudo id'", NO_SUDO),
        ("git rebase -x 'sudo id' HEAD~1", NO_SUDO),
        ("git bisect run sudo id", NO_SUDO),
        ("git submodule foreach 'sudo id'", NO_SUDO),
        ("GIT_SSH_COMMAND='sudo ssh' git fetch", NO_SUDO),
        ("PAGER='sudo tee /tmp/x' man ls", NO_SUDO),
        ("tar cf /dev/null x --checkpoint=1 --checkpoint-action=exec='sudo id'", NO_SUDO),
        ("tar xf a.tar --to-command='sudo tee /tmp/x'", NO_SUDO),
        ("tar -I 'sudo gzip' -cf x.tgz .", NO_SUDO),
        ("tar --use-compress-program='sudo gzip' -cf x .", NO_SUDO),
        ("python3 -c 'import os; os.system(\"sudo id\")'", NO_SUDO),
        ("python3 -c \"import subprocess; subprocess.run(['sudo', 'id'])\"", NO_SUDO),
        ("perl -e 'exec \"sudo\", \"id\"'", NO_SUDO),
        ("perl -le 'system \"/usr/bin/sudo id\"'", NO_SUDO),
        ("ruby -e 'system(\"sudo id\")'", NO_SUDO),
        ("node -e 'require(\"child_process\").execSync(\"sudo id\")'", NO_SUDO),
        ("vim -c '!sudo id' -c q", NO_SUDO),
        ("less '+!sudo id' /etc/hosts", NO_SUDO),
        ("man -P 'sudo tee /tmp/x' ls", NO_SUDO),
        ("gdb -batch -ex '!sudo id'", NO_SUDO),
        ("gdb -batch -ex 'shell sudo id'", NO_SUDO),
        ("make --eval='x:; sudo id' x", NO_SUDO),
        ("rsync -e 'sudo ssh' a b:", NO_SUDO),
        ("rsync -avze 'sudo ssh' a b:", NO_SUDO),
        ("zip x.zip f -T -TT 'sudo sh -c id'", NO_SUDO),
        ("ssh -o ProxyCommand='sudo nc %h %p' host", NO_SUDO),
        ("ssh -oLocalCommand='sudo id' -oPermitLocalCommand=yes host true", NO_SUDO),
        ("ssh localhost sudo id", NO_SUDO),
        ("scp -S sudo a host:", NO_SUDO),
    ],
    "shells reading stdin or a file": [
        ("echo 'sudo id' | sh -", UNPARSABLE_RULE),
        ("echo 'sudo id' | sh /dev/stdin", UNPARSABLE_RULE),
        ("echo 'sudo id' | bash /proc/self/fd/0", UNPARSABLE_RULE),
        ("echo 'sudo id' | zsh /dev/fd/0", UNPARSABLE_RULE),
        ("echo 'sudo id' | . /dev/stdin", UNPARSABLE_RULE),
        ("echo 'sudo id' | source /dev/stdin", UNPARSABLE_RULE),
    ],
    "PATH shadowing": [
        ("PATH=/tmp/evil:$PATH ls", NO_SUDO),
        ("PATH=/tmp/evil; ls", NO_SUDO),
        ("export PATH=/tmp/evil; ls", NO_SUDO),
        ("env PATH=/tmp/evil ls", NO_SUDO),
        ("git --exec-path=/tmp/evil status", NO_SUDO),
    ],
    "alias and trap": [
        ("alias x='sudo id'", NO_SUDO),
        ("trap 'sudo id' EXIT", NO_SUDO),
        ("trap -- '/usr/bin/sudo id' INT", NO_SUDO),
        ("trap \"$CMD\" EXIT", UNPARSABLE_RULE),
    ],
    "brace expansion": [
        ("{sudo,id}", UNPARSABLE_RULE),
        ("/usr/bin/{sudo,id}", UNPARSABLE_RULE),
        ("su{do,} id", UNPARSABLE_RULE),
        ("env {sudo,id}", UNPARSABLE_RULE),
    ],
    "env -S splitting": [
        ("env -S 'sudo\\_id'", UNPARSABLE_RULE),
        ("env --split-string='sudo\\_id'", UNPARSABLE_RULE),
    ],
    "here-doc delimiters": [
        ("cat <<E\"O\"F\nEOF\nsudo id\nE\"O\"F\n", UNPARSABLE_RULE),
        ("cat <<E\\OF\nEOF\nsudo id\nE\\OF\n", UNPARSABLE_RULE),
    ],
    "wrappers": [
        ("unshare -r sudo id", NO_SUDO),
        ("unshare --user --map-root-user sudo id", NO_SUDO),
        ("setpriv --reuid 1000 sudo id", NO_SUDO),
        ("setarch x86_64 -R sudo id", NO_SUDO),
        ("linux64 sudo id", NO_SUDO),
        ("prlimit --nofile=1024 sudo id", NO_SUDO),
        ("strace -f -o /dev/null sudo id", NO_SUDO),
        ("ltrace -f sudo id", NO_SUDO),
        ("nsenter -t 1 -m sudo id", NO_SUDO),
        ("capsh -- -c 'sudo id'", NO_SUDO),
        ("bwrap --bind / / sudo id", NO_SUDO),
        ("systemd-run --user --pty sudo id", NO_SUDO),
        ("faketime '2020-01-01' sudo id", NO_SUDO),
        ("fakeroot sudo id", NO_SUDO),
        ("sshpass -p x sudo id", NO_SUDO),
        ("valgrind sudo id", NO_SUDO),
        ("ssh-agent sudo id", NO_SUDO),
        ("newgrp root", NO_SUDO),
    ],
    "ld.so": [
        ("/lib64/ld-linux-x86-64.so.2 /usr/bin/sudo id", NO_SUDO),
        ("/lib/ld-musl-x86_64.so.1 --preload x.so sudo id", NO_SUDO),
    ],
}
FORMS = [form for forms in CLASSES.values() for form in forms]


@pytest.mark.parametrize("cmdline, rule", FORMS)
def test_issue_12_forms_are_refused_naming_the_rule(cmdline: str, rule: str) -> None:
    decision = check_command(OPERATOR, cmdline)
    assert (decision.allowed, decision.rule) == (False, rule), (cmdline, decision)


def parses(cmdline: str) -> bool:
    try:
        simple_commands(cmdline)
    except UnparsableCommand:
        return False
    return True


@pytest.mark.parametrize("cmdline", [form for form, rule in FORMS if rule == NO_SUDO and parses(form)])
def test_admin_may_run_the_forms_that_name_sudo(cmdline: str) -> None:
    assert check_command(ADMIN, cmdline).allowed, cmdline


def test_a_renamed_copy_of_sudo_is_not_recognised() -> None:
    # The limit of reading a line: a copy or link of sudo under another name looks like any program.
    # no_new_privs (the kernel) is what keeps it from raising privilege, not this parser.
    assert check_command(OPERATOR, "cp /usr/bin/sudo /tmp/x; /tmp/x id").allowed


def test_code_is_reported_with_its_form_and_text() -> None:
    found = simple_commands("timeout 5 python3 -c 'print(1)' && sh run.sh && awk 'BEGIN{system(c)}'")
    code = [(c.program, c.form, c.code, c.via) for c in found if c.kind == "code"]
    assert code == [("python3", "-c", "print(1)", ("timeout",)), ("sh", "FILE", "", ()),
                    ("awk", "system()", "BEGIN{system(c)}", ())]


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
    "find . -name '*.py' -exec sh -c 'wc -l \"$1\"' _ {} \\;",
    "ls | xargs -0 -I{} cp {} /tmp",
    "git -c color.ui=never -c core.pager=less log --oneline",
    "awk -F: '$3 >= 1000 || $1 == \"root\" {print $1}' /etc/passwd",
    "tar --checkpoint=100 --checkpoint-action=dot -czf x.tgz .",
    "rsync -az -e 'ssh -p 2222' a host:b",
    "ssh -o ConnectTimeout=5 host uptime",
    "cp app.py{,.bak}",
    "alias ll='ls -l'",
    "trap 'rm -f /tmp/x' EXIT",
    "cat <<EOF\nplain $HOME\nEOF\n",
    "cat <<-EOF\n\tindented\n\tEOF\n",
    "export LANG=C; make test",
    "strace -f -e trace=open ls",
    "python3 -m pytest -q",
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


def test_a_lone_bracket_is_the_test_program_and_a_bracket_pair_is_a_glob() -> None:
    assert [c.argv for c in simple_commands("[ -d /srv ] && ls")] == [("[", "-d", "/srv", "]"), ("ls",)]
    for computed in ("[a]b x", "/usr/bin/su[d]o id", "s?do id"):
        with pytest.raises(UnparsableCommand):
            simple_commands(computed)


@pytest.mark.parametrize("cmdline, allowed", [
    ("PATH=/srv/app/current/.venv/bin:$PATH ls", True),
    ("export PATH=/srv/app/current/node_modules/.bin:/srv/app/current/.venv/bin:${PATH}; ls", True),
    ("PATH=/srv/other/current/.venv/bin:$PATH ls", False),      # outside the granted workspace
    ("PATH=/srv/app/current/.venv/bin ls", False),              # replaces PATH instead of putting one first
    ("PATH=/srv/app/bin:$PATH ls", False),                      # not a release's program folder
    ("PATH=/srv/app/current/../../../tmp/current/.venv/bin:$PATH ls", False),
    ("PATH=/srv/app/$D/current/.venv/bin:$PATH ls", False),
    ("PATH=/tmp/evil:/srv/app/current/.venv/bin:$PATH ls", False),
])
def test_a_role_without_sudo_may_put_only_its_own_release_programs_first_on_path(cmdline: str,
                                                                              allowed: bool) -> None:
    grant = Grant("ops", BUILTIN_ROLES["operator"], ("/srv/app",))
    decision = check_command(grant, cmdline)
    assert decision.allowed is allowed, (cmdline, decision)
    assert allowed or decision.rule == "operator.no-sudo"
