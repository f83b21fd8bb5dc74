"""Over a hundred ways an operator key tries to become root, each proved by a real sudo rule.

The account logs in through a real sshd with an operator key that `bridge keys add` granted;
sudoers gives it NOPASSWD: ALL. Every form tries to run, through sudo, a root-owned marker
script that appends "<form> <uid>" to a log. The same forms run first through a second,
unrestricted key of the same account, which proves the sudo rule works and counts how many
forms reach uid 0 without the guard. Through the guard none may: the parser refuses some early
(126), and no_new_privs stops the rest in the kernel. A form whose program is not installed is
skipped and not counted.
"""
from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.security.conftest import Guarded

SUDO_EXIT_REFUSED = 126


@dataclass(frozen=True)
class Form:
    """One attempt: its attack class, the command (a template), and the programs it needs."""

    klass: str
    template: str
    needs: tuple[str, ...] = ()


def F(klass: str, template: str, *needs: str) -> Form:
    return Form(klass, template, needs)


# {S}: `sudo -n MARK ID`; {MA}: `MARK ID` (for forms that spell sudo themselves); {M}: the marker
# script; {id}: the form's id; {D}: the form's own scratch folder; {R}: a git repo in it.
FORMS = [
    F("plain", "{S}"), F("plain", "true; {S}"), F("plain", "echo $({S})"), F("plain", "/usr/bin/sudo -n {MA}"),
    F("plain", "env {S}"), F("plain", "sh -c '{S}'"),
    F("find -exec", "find /etc/hostname -exec sudo -n {MA} \\;", "find"),
    F("find -exec", "find /etc/hostname -execdir sudo -n {MA} \\;", "find"),
    F("find -exec", "find / -maxdepth 0 -exec sh -c '{S}' \\;", "find"),
    F("find -exec", "find /etc/hostname -exec env sudo -n {MA} +", "find"),
    F("awk system()", "awk 'BEGIN{{system(\"{S}\")}}'", "awk"),
    F("awk system()", "awk 'BEGIN{{print \"{S}\" | \"sh\"}}'", "awk"),
    F("awk system()", "awk 'BEGIN{{\"{S}\" | getline x}}'", "awk"),
    F("awk system()", "awk 'BEGIN{{c=\"su\" \"do\"; system(c \" -n {MA}\")}}'", "awk"),
    F("xargs", "echo {MA} | xargs sudo -n", "xargs"),
    F("xargs", "echo sudo -n {MA} | xargs env", "xargs"),
    F("xargs", "echo '{S}' | xargs -I@ sh -c @", "xargs"),
    F("xargs", "printf 'sudo\\0-n\\0{M}\\0{id}' | xargs -0 env", "xargs"),
    F("xargs", "echo {MA} | xargs -n2 /usr/bin/sudo -n", "xargs"),
    F("git alias", "git -c alias.x='!sudo -n {MA}' x", "git"),
    F("git alias", "git -C {R} -c alias.st='!{S}' st", "git"),
    F("git core.pager", "cd {R} && script -qc \"git -c core.pager='sudo -n {MA}' -p log\" /dev/null", "git", "script"),
    F("git core.pager", "cd {R} && GIT_PAGER='sudo -n {MA}' script -qc 'git -p log' /dev/null", "git", "script"),
    F("git core.fsmonitor", "git -C {R} -c core.fsmonitor='sudo -n {MA}; false' status", "git"),
    F("git core.sshCommand", "git -c core.sshCommand='sudo -n {MA}' ls-remote ssh://x/y", "git"),
    F("git core.sshCommand", "GIT_SSH_COMMAND='sudo -n {MA}' git ls-remote ssh://x/y", "git"),
    F("git other hooks", "git -C {R} -c core.editor='sudo -n {MA}' commit --allow-empty", "git"),
    F("git other hooks", "git -C {R} -c diff.external='sudo -n {MA}' diff", "git"),
    F("git other hooks", "git -c protocol.ext.allow=always ls-remote 'ext::sudo -n {MA}'", "git"),
    F("git other hooks", "mkdir -p {D}/hk && printf '#!/bin/sh\\n{S}\\n' > {D}/hk/pre-commit && chmod +x "
                         "{D}/hk/pre-commit && git -C {R} -c core.hooksPath={D}/hk commit -q --allow-empty -m x", "git"),
    F("tar --checkpoint-action", "tar cf /dev/null /etc/hostname --checkpoint=1 --checkpoint-action=exec='sudo -n {MA}'",
      "tar"),
    F("tar --checkpoint-action", "tar cf {D}/t.tar /etc/hostname 2>/dev/null && tar xf {D}/t.tar "
                                 "--to-command='sudo -n {MA}'", "tar"),
    F("tar --checkpoint-action", "tar cf {D}/c.tar -I 'sudo -n {MA}' /etc/hostname", "tar"),
    F("python3 -c", "python3 -c 'import os; os.system(\"{S}\")'", "python3"),
    F("python3 -c", "python3 -c 'import subprocess; subprocess.run([\"sudo\", \"-n\", \"{M}\", \"{id}\"])'", "python3"),
    F("python3 -c", "python3 -c '__import__(\"os\").execvp(\"su\" + \"do\", [\"sudo\", \"-n\", \"{M}\", \"{id}\"])'",
      "python3"),
    F("python3 -c", "echo 'import os; os.system(\"{S}\")' | python3", "python3"),
    F("python3 -c", "python3 -c 'import pty; pty.spawn([\"sudo\", \"-n\", \"{M}\", \"{id}\"])' </dev/null", "python3"),
    F("perl -e", "perl -e 'system(\"{S}\")'", "perl"),
    F("perl -e", "perl -e 'exec \"sudo\", \"-n\", \"{M}\", \"{id}\"'", "perl"),
    F("perl -e", "perl -e 'qx({S})'", "perl"),
    F("perl -e", "perl -e '$c = \"s\" . \"udo\"; system(\"$c -n {MA}\")'", "perl"),
    F("other interpreters", "echo 'exec sudo -n {MA}' | tclsh", "tclsh"),
    F("other interpreters", "node -e 'require(\"child_process\").execSync(\"{S}\")'", "node"),
    F("vim shell escape", "vim -u NONE -es -c '!{S}' -c 'qa!'", "vim"),
    F("vim shell escape", "vim -u NONE -es -c 'call system(\"{S}\")' -c 'qa!'", "vim"),
    F("vim shell escape", "vi -u NONE -es -c '!{S}' -c 'qa!'", "vi"),
    F("less shell escape", "LESSOPEN='|sudo -n {MA} %s' less /etc/hostname", "less"),
    F("less shell escape", "printf '!{S}\\nq\\nq' | script -qc 'less /etc/hostname' /dev/null", "less", "script"),
    F("man shell escape", "script -qc \"man -P 'sudo -n {MA}' ls\" /dev/null", "man", "script"),
    F("man shell escape", "printf '!{S}\\nq\\nq' | script -qc 'man ls' /dev/null", "man", "script"),
    F("man shell escape", "man -H'sudo -n {MA}' ls", "man"),
    F("ed shell escape", "echo '!{S}' | ed", "ed"),
    F("ed shell escape", "printf '%s\\n' '!{S}' q | ed -s /etc/hostname", "ed"),
    F("ed shell escape", "ed -s /etc/hostname <<EOF\n!{S}\nq\nEOF", "ed"),
    F("gdb shell escape", "gdb -nx -batch -ex 'shell {S}'", "gdb"),
    F("gdb shell escape", "gdb -nx -batch -ex '!{S}'", "gdb"),
    F("gdb shell escape", "gdb -nx -batch -ex 'python import os; os.system(\"{S}\")'", "gdb"),
    F("make --eval", "make -f /dev/null --eval='x: ; {S}' x", "make"),
    F("make --eval", "make -f /dev/null --eval='$(shell {S})'", "make"),
    F("make --eval", "printf 'x:\\n\\t{S}\\n' > {D}/mk && make -f {D}/mk x", "make"),
    F("rsync -e", "rsync -e 'sudo -n {MA}' h:/x {D}/r", "rsync"),
    F("rsync -e", "rsync -e 'env sudo -n {MA}' h:/x {D}/r2", "rsync"),
    F("rsync -e", "rsync --rsync-path='sudo -n {MA}' -e sh h:/x {D}/r3", "rsync"),
    F("zip -TT", "zip -q {D}/z.zip /etc/hostname -T -TT 'sudo -n {MA}'", "zip"),
    F("zip -TT", "zip -q {D}/z2.zip /etc/hostname -T --unzip-command='sudo -n {MA}'", "zip"),
    F("ssh -o ProxyCommand", "ssh -F /dev/null -o ProxyCommand='sudo -n {MA}' x", "ssh"),
    F("ssh -o ProxyCommand", "ssh -F /dev/null -o ProxyCommand=';sudo -n {MA}' x", "ssh"),
    F("ssh -o ProxyCommand", "printf 'Host x\\n ProxyCommand sudo -n {MA}\\n' > {D}/c && ssh -F {D}/c x", "ssh"),
    F("ssh -o ProxyCommand", "scp -F /dev/null -S 'sudo -n {MA}' /etc/hostname x:/y", "scp"),
    F("sed e", "sed -n '1e sudo -n {MA}' /etc/hostname", "sed"),
    F("sed e", "sed 's/.*/sudo -n {MA}/e' /etc/hostname", "sed"),
    F("shell from stdin", "echo '{S}' | sh"),
    F("shell from stdin", "echo '{S}' | sh -"),
    F("shell from stdin", "echo '{S}' | sh -s"),
    F("shell from stdin", "echo '{S}' | sh /dev/stdin"),
    F("shell from stdin", "echo '{S}' | bash /dev/stdin", "bash"),
    F("shell from stdin", "echo '{S}' | base64 | base64 -d | sh", "base64"),
    F("shell from stdin", "sh <<'EOF'\n{S}\nEOF"),
    F("shell from a file", "echo '{S}' > {D}/f; sh {D}/f"),
    F("shell from a file", "echo '{S}' > {D}/f; . {D}/f"),
    F("shell from a file", "printf '#!/bin/sh\\n{S}\\n' > {D}/f && chmod +x {D}/f && {D}/f"),
    F("shell from a file", "echo '{S}' > {D}/f; sh < {D}/f"),
    F("shell from a file", "mkdir {D}/rp && printf '#!/bin/sh\\n{S}\\n' > {D}/rp/x && chmod +x {D}/rp/x && "
                           "run-parts {D}/rp", "run-parts"),
    F("eval and quoting", "eval '{S}'"),
    F("eval and quoting", "eval \"$(printf '%s' su do) -n {MA}\""),
    F("eval and quoting", "exec sudo -n {MA}"),
    F("eval and quoting", "command sudo -n {MA}"),
    F("eval and quoting", "x=sudo; $x -n {MA}"),
    F("eval and quoting", "${{x:-sudo}} -n {MA}"),
    F("eval and quoting", "\"s\"udo -n {MA}"),
    F("eval and quoting", "s\\udo -n {MA}"),
    F("eval and quoting", "$(echo sudo) -n {MA}"),
    F("eval and quoting", "`echo sudo` -n {MA}"),
    F("eval and quoting", "$(printf '\\163\\165\\144\\157') -n {MA}"),
    F("eval and quoting", "IFS=,; c=\"sudo,-n,{M},{id}\"; $c"),
    F("eval and quoting", "set -- sudo -n {MA}; \"$@\""),
    F("eval and quoting", "sh -c '\"$0\" -n {MA}' sudo"),
    F("eval and quoting", "sh -c '\"$@\"' x sudo -n {MA}"),
    F("eval and quoting", "bash -c 'exec -a ls sudo -n {MA}'", "bash"),
    F("copy, symlink, ld.so", "ln -s /usr/bin/sudo {D}/s && {D}/s -n {MA}"),
    F("copy, symlink, ld.so", "ln -s /usr/bin/sudo {D}/ls && {D}/ls -n {MA}"),
    F("copy, symlink, ld.so", "cp /usr/bin/sudo {D}/s && {D}/s -n {MA}"),
    F("copy, symlink, ld.so", "ln /usr/bin/sudo {D}/h && {D}/h -n {MA}"),
    F("copy, symlink, ld.so", "/lib64/ld-linux-x86-64.so.2 /usr/bin/sudo -n {MA}"),
    F("copy, symlink, ld.so", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 /usr/bin/sudo -n {MA}"),
    F("copy, symlink, ld.so", "cd /usr/bin && ./sudo -n {MA}"),
    F("copy, symlink, ld.so", "/usr/bin/../bin/sudo -n {MA}"),
    F("copy, symlink, ld.so", "//usr//bin//sudo -n {MA}"),
    F("copy, symlink, ld.so", "/bin/sudo -n {MA}"),
    F("PATH shadowing", "mkdir {D}/p && ln -s /usr/bin/sudo {D}/p/ls && PATH={D}/p:$PATH ls -n {MA}"),
    F("PATH shadowing", "mkdir {D}/p && ln -s /usr/bin/sudo {D}/p/id && export PATH={D}/p:$PATH && id -n {MA}"),
    F("PATH shadowing", "cd /usr/bin && PATH=. sudo -n {MA}"),
    F("PATH shadowing", "mkdir {D}/p && ln -s /usr/bin/sudo {D}/p/cat && PATH={D}/p cat -n {MA}"),
    F("alias", "alias ll='sudo -n {MA}'\nll"),
    F("alias", "alias ls=sudo\nls -n {MA}"),
    F("alias", "bash -O expand_aliases -c \"alias ll='sudo -n {MA}'\nll\"", "bash"),
    F("trap", "trap 'sudo -n {MA}' EXIT"),
    F("trap", "trap 'sudo -n {MA}' EXIT; true"),
    F("trap", "trap 'sudo -n {MA}' USR1; kill -USR1 $$"),
    F("trap", "trap \"$(echo sudo) -n {MA}\" INT; kill -INT $$"),
    F("brace expansion", "bash -c '{{sudo,-n,{M},{id}}}'", "bash"),
    F("brace expansion", "{{sudo,-n,{M},{id}}}"),
    F("brace expansion", "bash -c 'x=({{sudo,-n}}); ${{x[@]}} {MA}'", "bash"),
    F("env -S", "env -S 'sudo -n {MA}'"),
    F("env -S", "env -S'sudo -n {MA}'"),
    F("env -S", "env -i -S 'sudo -n {MA}'"),
    F("env -S", "env --split-string='sudo -n {MA}'"),
    F("env -S", "env -u X -S 'sudo -n {MA}'"),
    F("here-doc delimiters", "cat <<EOF; {S}\nx\nEOF"),
    F("here-doc delimiters", "cat <<-EOF\n\tEOF\n{S}"),
    F("here-doc delimiters", "cat <<\\EOF\nEOF\n{S}"),
    F("here-doc delimiters", "cat <<EOF\n$({S})\nEOF"),
    F("here-doc delimiters", "cat <<EOF\n`{S}`\nEOF"),
    F("here-doc delimiters", "cat <<E\"O\"F\nEOF\n{S}\nE\"O\"F"),
    F("here-doc delimiters", "cat <<'E O'\nE O\n{S}"),
    F("wrappers", "unshare sudo -n {MA}", "unshare"),
    F("wrappers", "unshare -U sudo -n {MA}", "unshare"),
    F("wrappers", "setpriv sudo -n {MA}", "setpriv"),
    F("wrappers", "setpriv --inh-caps=-all sudo -n {MA}", "setpriv"),
    F("wrappers", "setarch x86_64 sudo -n {MA}", "setarch"),
    F("wrappers", "setarch $(uname -m) -R sudo -n {MA}", "setarch"),
    F("wrappers", "prlimit --nofile=1024 sudo -n {MA}", "prlimit"),
    F("wrappers", "prlimit sudo -n {MA}", "prlimit"),
    F("wrappers", "strace -f -o /dev/null sudo -n {MA}", "strace"),
    F("wrappers", "timeout 30 sudo -n {MA}", "timeout"),
    F("wrappers", "stdbuf -o0 sudo -n {MA}", "stdbuf"),
    F("wrappers", "nohup sudo -n {MA} >/dev/null", "nohup"),
    F("wrappers", "flock {D}/lk sudo -n {MA}", "flock"),
    F("wrappers", "script -qc 'sudo -n {MA}' /dev/null", "script"),
    F("wrappers", "taskset 1 sudo -n {MA}", "taskset"),
    F("wrappers", "ionice -c3 sudo -n {MA}", "ionice"),
    F("wrappers", "chrt -o 0 sudo -n {MA}", "chrt"),
    F("wrappers", "stdbuf -oL env nice -n 1 sudo -n {MA}", "stdbuf"),
    F("wrappers", "sg $(id -gn) -c '{S}'", "sg"),
]

MARK = """#!/bin/sh
# a root-owned marker: which form got here, as whom
echo "$1 $(id -u)" >> {log}
"""


def _installed(form: Form) -> bool:
    return all(shutil.which(program) for program in form.needs)


def _prepare(guarded: Guarded, pass_name: str, forms: list[Form]) -> tuple[Path, list[str]]:
    """The marker log for one pass, and each form's command with its own scratch folder and repo."""
    base = guarded.root / pass_name
    base.mkdir(mode=0o755)
    log = base / "marks.log"
    mark = base / "mark"
    mark.write_text(MARK.format(log=log))
    mark.chmod(0o755)
    commands = []
    for n, form in enumerate(forms):
        form_id = f"{pass_name}-{n:03d}"
        scratch, repo = base / form_id, base / form_id / "repo"
        scratch.mkdir()
        if "git" in form.needs:
            _make_repo(repo)
        subprocess.run(["chown", "-R", f"{guarded.account.uid}:{guarded.account.gid}", str(scratch)], check=True)
        sudo = f"sudo -n {mark} {form_id}"
        commands.append(form.template.format(S=sudo, MA=f"{mark} {form_id}", M=mark, id=form_id, D=scratch, R=repo))
    return log, commands


def _make_repo(repo: Path) -> None:
    """A repo with one commit and one modified file (so diff, status and log have work to do)."""
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "a.txt").write_text("a\n")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    (repo / "a.txt").write_text("b\n")


def _run_all(run, commands: list[str]) -> list[subprocess.CompletedProcess | None]:
    """Each command in its own SSH session, four at a time (a form that hangs is given up at its timeout)."""
    def one(command: str) -> subprocess.CompletedProcess | None:
        try:
            return run(command)
        except subprocess.TimeoutExpired:
            return None

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, commands))


def _root_forms(log: Path) -> set[str]:
    """The forms whose marker ran as uid 0."""
    lines = log.read_text().splitlines() if log.exists() else []
    return {line.split()[0] for line in lines if line.split()[1:] == ["0"]}


def test_no_form_reaches_root_through_the_guard(guarded: Guarded) -> None:
    forms = [form for form in FORMS if _installed(form)]
    guarded.grant("operator")
    assert guarded.unguarded_ssh("true").returncode == 0  # makes the second key before the threads start
    plain_log, plain_commands = _prepare(guarded, "plain", forms)
    _run_all(lambda c: _ssh(guarded, c, guarded_key=False), plain_commands)
    root_without_guard = _root_forms(plain_log)
    assert root_without_guard, "the account's sudo rule must work without the guard, or this test proves nothing"

    log, commands = _prepare(guarded, "guard", forms)
    results = _run_all(lambda c: _ssh(guarded, c, guarded_key=True), commands)
    reached = _root_forms(log)
    refused = {n for n, r in enumerate(results) if r is not None and r.returncode == SUDO_EXIT_REFUSED}
    _report(forms, root_without_guard, refused)
    assert not reached, f"reached uid 0 through the guard: {sorted(reached)}"
    audited = Counter(entry["command"] for entry in guarded.entries())
    assert len(forms) >= 100
    assert all(audited[c] == 1 for c in commands), [(c, audited[c], r) for c, r in zip(commands, results)
                                                    if audited[c] != 1]
    assert len(root_without_guard) >= len(forms) // 2, "most forms must be real attacks without the guard"


def _ssh(guarded: Guarded, command: str, guarded_key: bool) -> subprocess.CompletedProcess:
    if guarded_key:
        return subprocess.run([*guarded.ssh_argv(), command], capture_output=True, env=guarded.home.env,
                              timeout=60, stdin=subprocess.DEVNULL)
    return guarded.unguarded_ssh(command)


def _report(forms: list[Form], root_without_guard: set[str], refused: set[int]) -> None:
    """Per attack class: forms tried, how many reach root without the guard, how many the parser refused early."""
    tried = Counter(form.klass for form in forms)
    rooted = Counter(forms[int(name.split("-")[1])].klass for name in root_without_guard)
    early = Counter(forms[n].klass for n in refused)
    print(f"\n{'attack class':28} tried  root-without-guard  refused-by-parser  root-through-guard")
    for klass in tried:
        print(f"{klass:28} {tried[klass]:5}  {rooted[klass]:18}  {early[klass]:17}  {0:18}")
    print(f"{'total':28} {len(forms):5}  {len(root_without_guard):18}  {len(refused):17}  {0:18}")
