"""Find every program a shell command line would run, so a policy can judge each one.

The line is parsed with bash's grammar (bashlex): every simple command in lists, pipelines,
subshells, `$(...)`, backticks, process substitutions and redirections is found, and programs
that run another program are looked through (one table, WRAPPERS): wrappers (env, nice,
timeout, unshare, strace, ld.so, ...), shells (`sh -c`, eval, alias and trap actions), and
the options of ordinary tools that run a command (find -exec, xargs, git aliases and
config, awk system(), tar --to-command, rsync -e, zip -TT, ssh -o ProxyCommand, man -P,
PAGER=/EDITOR=-style variables, ...): a command written on the line is parsed like the line.
Code the line hands to an interpreter (`python3 -c`, `perl -e`, a script file, vim or gdb
commands, a Makefile) cannot be read: it is reported as a `code` command (its form, and its
text when written) so the policy can refuse it for allow-list roles and when it names sudo.
Setting PATH is reported too (`path`): afterwards a program name may mean any file.

Anything that cannot be decided statically (a syntax error, a construct bashlex does not
support, a program name computed at run time or by brace expansion, a shell reading its
program from stdin, a here-doc delimiter bashlex and sh read differently, an unknown wrapper
option) raises `UnparsableCommand`: refused, never guessed.

This is guidance, not the boundary: a program renamed or copied (`cp /usr/bin/sudo x; ./x`)
or code built at run time cannot be recognised by reading the line. The kernel (no_new_privs)
and the account are what stop privilege; these rules give early, friendly refusals.
"""
from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.errors import PolicyDenied

MAX_DEPTH = 8
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_GLOB = re.compile(r"[*?]|\[.*\]")  # a `[` with no `]` after it is literal in sh (the `[` program)
_HIDDEN_SUBST = ("$(", "`", "<(", ">(")
_DYNAMIC_KINDS = {"parameter", "commandsubstitution", "processsubstitution"}
_PASSIVE_KINDS = {"operator", "pipe", "reservedword", "tilde"}
_WALKED_KINDS = _PASSIVE_KINDS | {"word", "assignment", "redirect", "list", "pipeline", "compound", "if", "for",
                                  "while", "until", "function", "command", "commandsubstitution",
                                  "processsubstitution", "parameter", "heredoc"}
_QUOTED = re.compile(r"""'[^']*'|"(?:[^"\\]|\\.)*"|\\.""", re.S)
_BRACES = re.compile(r"(?<!\$)\{[^{}\s]*(?:,|\.\.)[^{}\s]*\}")
_PLAIN_DELIMITER = re.compile(r"[A-Za-z0-9_.-]+")
_STDIN_PATHS = re.compile(r"-|/dev/stdin|/dev/tty|/dev/fd/\d+|/proc/(?:self|thread-self|\d+)/fd/\d+")
# Variables whose value is a command some program runs (git, man, less, ssh, rsync, sudo, bash...).
COMMAND_VARIABLES = frozenset({
    "PAGER", "GIT_PAGER", "MANPAGER", "SYSTEMD_PAGER", "EDITOR", "VISUAL", "GIT_EDITOR", "GIT_SEQUENCE_EDITOR",
    "GIT_SSH_COMMAND", "GIT_SSH", "GIT_PROXY_COMMAND", "GIT_EXTERNAL_DIFF", "GIT_ASKPASS", "SSH_ASKPASS",
    "SUDO_ASKPASS", "BROWSER", "LESSOPEN", "LESSCLOSE", "PROMPT_COMMAND", "RSYNC_RSH", "CVS_RSH"})
# Variables that make a program load code or settings the line does not show.
CODE_VARIABLES = frozenset({"BASH_ENV", "ENV", "LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH", "PERL5OPT", "PERL5LIB",
                            "NODE_OPTIONS", "RUBYOPT", "PYTHONSTARTUP", "PYTHONPATH", "GIT_CONFIG_PARAMETERS",
                            "GIT_CONFIG_COUNT", "GIT_CONFIG", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_EXEC_PATH"})


class UnparsableCommand(PolicyDenied):
    """The command line cannot be checked statically, so it is refused; `found` holds the programs
    read before the part that could not be, so a policy can name a more telling rule first."""

    default_hint = "write the command without run-time computed program names or unsupported syntax"
    found: tuple["SimpleCommand", ...] = ()


@dataclass(frozen=True)
class SimpleCommand:
    """One program the shell would start, with its arguments and the wrappers it sits behind.

    `kind` is "program" for a program started with these arguments, "code" when the program
    is handed code the rules cannot read (`form` says how: "-c", "FILE", "system()"; `code` is
    the text when it is written on the line), and "path" when the line sets PATH.
    """

    argv: tuple[str, ...]
    via: tuple[str, ...] = ()
    kind: str = "program"
    form: str = ""
    code: str = ""

    @property
    def program(self) -> str:
        """The program's base name: `/usr/bin/sudo` and `sudo` are the same program."""
        return os.path.basename(self.argv[0]) or self.argv[0]


@dataclass(frozen=True)
class Word:
    """A shell word after quote removal; `dynamic` when expansions decide its value at run time,
    `braces` when unquoted brace expansion (`{su,do}`) would make more or other words of it."""

    text: str
    dynamic: bool = False
    braces: bool = False


@dataclass
class _Walk:
    out: list[SimpleCommand] = field(default_factory=list)


def simple_commands(cmdline: str) -> list[SimpleCommand]:
    """Every program `cmdline` would run, outermost first; raises UnparsableCommand."""
    walk = _Walk()
    try:
        _parse_into(cmdline, walk, depth=0, via=())
    except UnparsableCommand as e:
        e.found = tuple(walk.out)
        raise
    return walk.out


def _parse_into(cmdline: str, walk: _Walk, depth: int, via: tuple[str, ...]) -> None:
    """Parse one shell string (a whole line or a `sh -c` argument) and collect its commands."""
    if depth > MAX_DEPTH:
        raise UnparsableCommand(f"commands nested more than {MAX_DEPTH} deep")
    if not cmdline.strip():
        raise UnparsableCommand("empty command")
    for node in _bashlex_parse(cmdline):
        _walk_node(node, cmdline, walk, depth, via)


def _bashlex_parse(cmdline: str) -> list:
    """bashlex's AST, with its many exception types folded into UnparsableCommand."""
    import bashlex  # imported here so `bridge --help` stays fast

    try:
        return bashlex.parse(cmdline)
    except Exception as e:  # bashlex raises ParsingError, NotImplementedError, AttributeError, ...
        raise UnparsableCommand(f"cannot parse command: {type(e).__name__}: {e}") from e


def _children(node) -> list:
    """The sub-nodes of any bashlex node (parts, list, command, output, heredoc)."""
    kids = list(getattr(node, "parts", None) or []) + list(getattr(node, "list", None) or [])
    for attr in ("command", "output", "heredoc"):
        child = getattr(node, attr, None)
        if child is not None and hasattr(child, "kind"):
            kids.append(child)
    return kids


def _walk_node(node, source: str, walk: _Walk, depth: int, via: tuple[str, ...]) -> None:
    """Visit a node: check hidden substitutions and here-docs, collect commands, recurse."""
    kind = node.kind
    if kind not in _WALKED_KINDS:
        raise UnparsableCommand(f"unsupported shell construct: {kind}")
    if kind in ("parameter", "heredoc"):
        _refuse_hidden_substitution(getattr(node, "value", "") or "")
    if kind == "redirect" and node.type in ("<<", "<<-"):
        _check_heredoc(node, source)
    for child in _children(node):
        _walk_node(child, source, walk, depth, via)
    if kind == "command":
        ctx = _Ctx("", walk, depth, via)
        for part in node.parts:
            if part.kind == "assignment":
                _assignment(ctx, _word(part, source))
        _resolve([_word(p, source) for p in node.parts if p.kind == "word"], walk, depth, via)


def _refuse_hidden_substitution(text: str) -> None:
    """bashlex leaves `${x:-$(cmd)}` and here-doc bodies unparsed: refuse commands hidden there."""
    if any(marker in text for marker in _HIDDEN_SUBST):
        raise UnparsableCommand(f"command substitution inside {text[:40]!r} cannot be checked")


def _check_heredoc(node, source: str) -> None:
    """bashlex ends a here-doc at its delimiter as typed (`E"O"F`), sh at the delimiter unquoted
    (`EOF`): lines between would be data to one and commands to the other. Only plain delimiters
    whose closing line bashlex found are accepted."""
    start, end = node.output.pos
    delimiter = source[start:end]
    if not _PLAIN_DELIMITER.fullmatch(delimiter):
        raise UnparsableCommand(f"here-doc delimiter {delimiter!r} is read differently by shells; write it plain")
    lines = (node.heredoc.value if node.heredoc else "").split("\n")
    if (lines[-1].lstrip("\t") if node.type == "<<-" else lines[-1]) != delimiter:
        raise UnparsableCommand(f"here-doc {delimiter!r} has no closing line")


def _word(node, source: str) -> Word:
    """A bashlex word node as a Word, dynamic when it holds a parameter or substitution.

    bashlex's own `word` text mishandles quotes in some nestings (`'a '"'"'b'` keeps the
    inner quotes), so static words are unquoted again from the source text.
    """
    start, end = node.pos
    raw = source[start:end]
    braces = bool(_BRACES.search(_QUOTED.sub("", raw)))
    if any(p.kind in _DYNAMIC_KINDS for p in (node.parts or [])):
        return Word(node.word, True, braces)
    return Word(unquote(raw), False, braces)


def unquote(raw: str) -> str:
    """POSIX quote removal for a word without expansions: quotes, backslashes, line continuations."""
    out: list[str] = []
    i, quote = 0, ""
    while i < len(raw):
        ch = raw[i]
        if quote == "'":
            quote = "" if ch == "'" else quote
            out.append("" if ch == "'" else ch)
        elif ch == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            i += 1
            out.append("" if nxt == "\n" else (nxt if not quote or nxt in '$`"\\' else ch + nxt))
        elif ch in "'\"" and quote in ("", ch):
            quote = ch if not quote else ""
        else:
            out.append(ch)
        i += 1
    if quote:
        raise UnparsableCommand(f"unterminated quote in {raw!r}")
    return "".join(out)


def _resolve(words: list[Word], walk: _Walk, depth: int, via: tuple[str, ...]) -> None:
    """Record the program `words` runs, then look through it if it runs other programs."""
    if not words:
        return
    head = words[0]
    if head.dynamic or head.braces or _GLOB.search(head.text) or not head.text:
        raise UnparsableCommand(f"program name {head.text!r} is computed at run time")
    cmd = SimpleCommand(tuple(w.text for w in words), via)
    walk.out.append(cmd)
    handler = handler_for(cmd.program)
    if handler is None:
        return
    if any(w.braces for w in words[1:]):
        raise UnparsableCommand(f"{cmd.program}: brace expansion in its arguments decides what it runs")
    handler(_Ctx(cmd.program, walk, depth, via + (cmd.program,), cmd.argv[0]), words[1:])


def handler_for(program: str) -> Callable[[_Ctx, list[Word]], None] | None:
    """How `program` runs other programs (None: it does not); ld.so goes by many names."""
    handler = WRAPPERS.get(program)
    if handler is None and _LD_SO.fullmatch(program):
        return _ld_so
    return handler


@dataclass(frozen=True)
class _Ctx:
    """Where a wrapper handler sends what it finds."""

    name: str
    walk: _Walk
    depth: int
    via: tuple[str, ...]
    path: str = ""

    def argv(self, words: list[Word]) -> None:
        """The wrapper runs `words` as a command."""
        _resolve(words, self.walk, self.depth, self.via)

    def script(self, word: Word) -> None:
        """The wrapper runs `word` as a shell script string."""
        if word.dynamic:
            raise UnparsableCommand(f"{self.name}: command string is computed at run time")
        _parse_into(word.text, self.walk, self.depth + 1, self.via)

    def code(self, form: str, text: str = "") -> None:
        """The program runs code the rules cannot read: record it as `PROGRAM FORM`."""
        self.walk.out.append(SimpleCommand((self.path or self.name,), self.via[:-1], "code", form, text))

    def refuse(self, why: str) -> UnparsableCommand:
        """An error naming this wrapper."""
        return UnparsableCommand(f"{self.name}: {why}")


def _assignment(ctx: _Ctx, word: Word) -> None:
    """NAME=VALUE before a command, alone, or given to env/export: PATH changes what program names
    mean, command-valued variables are parsed, code-loading ones recorded."""
    name, _, value = word.text.partition("=")
    if name == "PATH":
        ctx.walk.out.append(SimpleCommand((word.text,), ctx.via, "path"))
    elif name in COMMAND_VARIABLES:
        if word.dynamic:
            raise UnparsableCommand(f"{name}: the command it names is computed at run time")
        if value.strip(" |"):
            _parse_into(value.strip(" |"), ctx.walk, ctx.depth + 1, ctx.via + (name,))
    elif name in CODE_VARIABLES or name.startswith("GIT_CONFIG_"):
        ctx.walk.out.append(SimpleCommand((f"{name}=",), ctx.via, "code", "set", value))


@dataclass(frozen=True)
class OptSpec:
    """A wrapper's options: which take an argument, and how many operands precede the command."""

    flags: str = ""
    with_arg: str = ""
    long_flags: frozenset[str] = frozenset()
    long_with_arg: frozenset[str] = frozenset()
    positionals: int = 0
    numeric: bool = False


def _spec(flags: str = "", with_arg: str = "", long_flags: str = "", long_with_arg: str = "",
          positionals: int = 0, numeric: bool = False) -> OptSpec:
    """An OptSpec from space-separated long option names, to keep the table readable."""
    return OptSpec(flags, with_arg, frozenset(long_flags.split()), frozenset(long_with_arg.split()),
                   positionals, numeric)


def split_options(ctx: _Ctx, words: list[Word], spec: OptSpec) -> tuple[dict[str, str], list[Word]]:
    """Options (name -> argument or "") up to the first operand or `--`, then the rest; unknown ones refuse."""
    opts: dict[str, str] = {}
    i = 0
    while i < len(words):
        w = words[i]
        if w.dynamic:
            raise ctx.refuse(f"argument {w.text!r} is computed at run time")
        if w.text == "--":
            return opts, words[i + 1:]
        if not w.text.startswith("-") or w.text == "-":
            break
        i = _take_option(ctx, words, i, spec, opts)
    return opts, words[i:]


def _take_option(ctx: _Ctx, words: list[Word], i: int, spec: OptSpec, opts: dict[str, str]) -> int:
    """Consume the option at `words[i]` into `opts`; return the index after it."""
    text = words[i].text
    if text.startswith("--"):
        return _take_long(ctx, words, i, spec, opts)
    if spec.numeric and text[1:].isdigit():
        opts["n"] = text[1:]
        return i + 1
    for pos, ch in enumerate(text[1:], start=1):
        if ch in spec.with_arg:
            arg = text[pos + 1:]
            if arg:
                opts[ch] = arg
                return i + 1
            opts[ch] = _next_arg(ctx, words, i, text)
            return i + 2
        if ch not in spec.flags:
            raise ctx.refuse(f"unknown option -{ch}")
        opts[ch] = ""
    return i + 1


def _take_long(ctx: _Ctx, words: list[Word], i: int, spec: OptSpec, opts: dict[str, str]) -> int:
    """Consume a `--long[=value]` option."""
    name, eq, value = words[i].text.partition("=")
    if name in spec.long_with_arg:
        if eq:
            opts[name] = value
            return i + 1
        opts[name] = _next_arg(ctx, words, i, name)
        return i + 2
    if name in spec.long_flags:
        opts[name] = value
        return i + 1
    raise ctx.refuse(f"unknown option {name}")


def _next_arg(ctx: _Ctx, words: list[Word], i: int, name: str) -> str:
    """The argument following option `name`."""
    if i + 1 >= len(words):
        raise ctx.refuse(f"option {name} needs an argument")
    if words[i + 1].dynamic:
        raise ctx.refuse(f"argument of {name} is computed at run time")
    return words[i + 1].text


def _skip_operands(ctx: _Ctx, rest: list[Word], count: int) -> list[Word]:
    """Drop the `count` operands a wrapper takes before its command (timeout's duration)."""
    for w in rest[:count]:
        if w.dynamic:
            raise ctx.refuse(f"argument {w.text!r} is computed at run time")
    return rest[count:]


def _generic(spec: OptSpec, no_command_opts: str = "") -> Callable[[_Ctx, list[Word]], None]:
    """A handler for `wrapper [options] [operands] command...`."""

    def handle(ctx: _Ctx, words: list[Word]) -> None:
        opts, rest = split_options(ctx, words, spec)
        if any(o in opts for o in no_command_opts.split()):
            return
        rest = _skip_operands(ctx, rest, spec.positionals)
        if rest:
            ctx.argv(rest)

    return handle


def _skip_assignments(ctx: _Ctx, rest: list[Word]) -> list[Word]:
    """Drop leading NAME=value words (env, sudo), judging each like a shell assignment."""
    while rest and not rest[0].dynamic and _ASSIGNMENT.match(rest[0].text):
        _assignment(ctx, rest[0])
        rest = rest[1:]
    return rest


_ENV = _spec("i0v", "uCS", "--ignore-environment --null --debug --block-signal --default-signal "
             "--ignore-signal --list-signal-handling", "--unset --chdir --split-string", 0)


def _env(ctx: _Ctx, words: list[Word]) -> None:
    """env [-i] [-u N] [-S STRING] [NAME=VALUE]... COMMAND: -S splits its string into words."""
    words = [Word("-i") if w.text == "-" and not w.dynamic else w for w in words]
    opts, rest = split_options(ctx, words, _ENV)
    split = opts.get("S") or opts.get("--split-string")
    if split is not None:
        rest = [Word(t) for t in _env_split(ctx, split)] + rest
    rest = _skip_assignments(ctx, rest)
    if rest:
        ctx.argv(rest)


def _env_split(ctx: _Ctx, text: str) -> list[str]:
    """env -S word splitting; GNU env's own escapes (`\\_` is a separator), `${VAR}` and `#` refuse."""
    if any(c in text for c in "\\$#"):
        raise ctx.refuse(f"-S {text!r}: escapes and variables in the split string cannot be checked")
    try:
        return shlex.split(text)
    except ValueError as e:
        raise ctx.refuse(f"cannot split {text!r}: {e}") from e


_SHELL = _spec("abefhikmnprtuvxBCEHPTlcsD", "oO", "--login --noprofile --norc --posix --restricted "
               "--verbose --noediting --debugger --dump-strings --dump-po-strings --wordexp --help "
               "--version", "--rcfile --init-file")


def _shell(ctx: _Ctx, words: list[Word]) -> None:
    """sh/bash [-options] -c STRING | FILE: the string is parsed, a file is code; stdin is refused."""
    words = [Word("-" + w.text[1:]) if w.text.startswith("+") and not w.dynamic else w for w in words]
    opts, rest = split_options(ctx, words, _SHELL)
    if "c" in opts:
        if not rest:
            raise ctx.refuse("-c without a command string reads it at run time")
        ctx.script(rest[0])
    elif not rest or "s" in opts or "i" in opts:
        raise ctx.refuse("a shell reading commands from stdin cannot be checked")
    else:
        _script_file(ctx, rest[0])


def _script_file(ctx: _Ctx, word: Word) -> None:
    """A shell runs its program from a file: code, unless the file is stdin (refused)."""
    if word.dynamic:
        raise ctx.refuse("the script file is computed at run time")
    if _STDIN_PATHS.fullmatch(word.text):
        raise ctx.refuse(f"a shell reading its program from {word.text} cannot be checked")
    ctx.code("FILE")


def _source(ctx: _Ctx, words: list[Word]) -> None:
    """`. FILE` / `source FILE`: the current shell runs the file."""
    if not words:
        raise ctx.refuse("needs a file")
    _script_file(ctx, words[0])


def _command_string_option(*names: str) -> Callable[[_Ctx, list[Word]], None]:
    """su/script style: options may come anywhere; the command is the argument of `-c`/`--command`."""

    def handle(ctx: _Ctx, words: list[Word]) -> None:
        for i, w in enumerate(words):
            name, eq, value = w.text.partition("=")
            if name in names and eq:
                ctx.script(Word(value, w.dynamic))
            elif _names_c(w.text, names):
                if i + 1 >= len(words):
                    raise ctx.refuse(f"{w.text} needs an argument")
                ctx.script(words[i + 1])

    return handle


def _names_c(text: str, names: tuple[str, ...]) -> bool:
    """True for `-c`, a short cluster ending in c (`-lc`) or a bare long name."""
    if text in names:
        return True
    return len(text) > 2 and text[0] == "-" and text[1] != "-" and text.endswith("c")


_SUDO = _spec("AbEeHiKklnPSsVv", "ugpChrtUTD", "--askpass --background --preserve-env --edit --set-home "
              "--login --remove-timestamp --reset-timestamp --list --non-interactive --preserve-groups "
              "--stdin --shell --validate --version --help",
              "--user --group --host --prompt --close-from --chdir --role --type --other-user "
              "--command-timeout")


def _sudo(ctx: _Ctx, words: list[Word]) -> None:
    """sudo [options] [NAME=VALUE]... COMMAND; `sudo -e` edits files and runs no command."""
    opts, rest = split_options(ctx, words, _SUDO)
    if "e" in opts or "--edit" in opts:
        return
    rest = _skip_assignments(ctx, rest)
    if rest:
        ctx.argv(rest)


# -e, -i and -l take an argument only when it is attached (-i{}), so alone they are flags.
_XARGS = _spec("0rtpxoeil", "adEILnPs", "--null --no-run-if-empty --verbose --interactive --exit "
               "--open-tty --show-limits", "--arg-file --delimiter --eof --replace --max-lines "
               "--max-args --max-procs --max-chars --process-slot-var")


def _xargs(ctx: _Ctx, words: list[Word]) -> None:
    """xargs [options] [COMMAND [initial-args]]: the command gets words from stdin, appended or in
    place of the replace string, so those are run-time words to whatever it is (echo without one)."""
    opts, rest = split_options(ctx, words, _XARGS)
    replace = opts.get("I") or opts.get("--replace") or ("{}" if "i" in opts else opts.get("i"))
    if replace:
        ctx.argv(_fed(rest, replace))
    elif rest:
        ctx.argv(rest + [Word("<stdin>", dynamic=True)])


def _fed(words: list[Word], marker: str) -> list[Word]:
    """`words` with each one holding `marker` (xargs -I, find's {}) made dynamic: filled at run time."""
    return [Word(w.text, True, w.braces) if marker in w.text else w for w in words]


def _find(ctx: _Ctx, words: list[Word]) -> None:
    """find ... -exec COMMAND ... ; (also -execdir, -ok, -okdir): `{}` is a file name at run time."""
    i = 0
    while i < len(words):
        if words[i].text in ("-exec", "-execdir", "-ok", "-okdir") and not words[i].dynamic:
            end = _find_end(words, i + 1)
            ctx.argv(_fed(words[i + 1:end], "{}"))
            i = end
        i += 1


def _find_end(words: list[Word], start: int) -> int:
    """Index of the `;` or `+` closing a find -exec command."""
    for j in range(start, len(words)):
        if words[j].text in (";", "+"):
            return j
    return len(words)


def _eval(ctx: _Ctx, words: list[Word]) -> None:
    """eval ARGS...: the arguments joined by spaces are parsed again as a script."""
    if any(w.dynamic for w in words):
        raise ctx.refuse("arguments are computed at run time")
    if words:
        ctx.script(Word(" ".join(w.text for w in words)))


def _alias(ctx: _Ctx, words: list[Word]) -> None:
    """alias NAME=VALUE...: a later line may run VALUE in place of NAME, so VALUE is parsed now."""
    for w in words:
        name, eq, value = w.text.partition("=")
        if w.dynamic:
            raise ctx.refuse(f"alias {name} is computed at run time")
        if eq and value.strip():
            ctx.script(Word(value))


def _trap(ctx: _Ctx, words: list[Word]) -> None:
    """trap [-lp] [ACTION] SIGNAL...: the shell runs ACTION later, so it is parsed now."""
    _opts, rest = split_options(ctx, words, _spec("lp"))
    if len(rest) >= 2 and rest[0].text not in ("", "-") and not rest[0].text.isdigit():
        ctx.script(rest[0])


def _declare(ctx: _Ctx, words: list[Word]) -> None:
    """export/declare/readonly/local NAME=VALUE...: the same assignments as without the builtin."""
    for w in words:
        if not w.text.startswith("-") and _ASSIGNMENT.match(w.text):
            _assignment(ctx, w)


_WATCH = _spec("bcCdegptxwr", "nq", "--beep --color --no-color --differences --errexit --chgexit "
               "--precise --no-title --exec --no-wrap --no-rerun", "--interval --equexit")


def _watch(ctx: _Ctx, words: list[Word]) -> None:
    """watch [options] COMMAND: joined and run by `sh -c` unless -x."""
    opts, rest = split_options(ctx, words, _WATCH)
    if "x" in opts or "--exec" in opts:
        ctx.argv(rest)
    elif rest:
        _eval(ctx, rest)


_FLOCK = _spec("sxeunoFv", "wEc", "--shared --exclusive --unlock --nonblock --close --no-fork --verbose",
               "--timeout --conflict-exit-code --command")


def _flock(ctx: _Ctx, words: list[Word]) -> None:
    """flock [options] FILE COMMAND... or flock [options] FILE -c STRING."""
    opts, rest = split_options(ctx, words, _FLOCK)
    rest = _skip_operands(ctx, rest, 1)
    if rest and rest[0].text in ("-c", "--command") and len(rest) > 1:
        ctx.script(rest[1])
    elif "c" in opts or "--command" in opts:
        ctx.script(Word(opts.get("c") or opts["--command"]))
    elif rest:
        ctx.argv(rest)


def _applet(ctx: _Ctx, words: list[Word]) -> None:
    """busybox APPLET ARGS...: the applet is the program."""
    if words:
        ctx.argv(words)


def _sg(ctx: _Ctx, words: list[Word]) -> None:
    """sg GROUP [-c] COMMAND: run through `sh -c`."""
    rest = _skip_operands(ctx, words, 1)
    if rest and rest[0].text == "-c":
        rest = rest[1:]
    if rest:
        _eval(ctx, rest)


_LD_SO = re.compile(r"ld(?:-linux[\w.-]*|-musl[\w.-]*)?\.so(?:\.\d+)*")
_LD = _spec(long_flags="--inhibit-cache --list --verify --help --version --list-tunables --list-diagnostics",
            long_with_arg="--library-path --preload --argv0 --audit --inhibit-rpath --glibc-hwcaps-prefix "
                          "--glibc-hwcaps-mask")


def _ld_so(ctx: _Ctx, words: list[Word]) -> None:
    """/lib64/ld-linux-x86-64.so.2 PROGRAM ARGS: the dynamic loader runs any program file, setuid bit ignored."""
    _generic(_LD)(ctx, words)


def _setarch(ctx: _Ctx, words: list[Word]) -> None:
    """setarch ARCH [options] [PROGRAM...] (and linux32/linux64, which take no ARCH): the default is a shell."""
    rest = words if ctx.name != "setarch" else _skip_operands(ctx, words, 1)
    _opts, rest = split_options(ctx, rest, _spec("vRFZLXBIST3", "", "--verbose --addr-no-randomize "
                                                 "--fdpic-funcptrs --mmap-page-zero --addr-compat-layout "
                                                 "--read-implies-exec --32bit --short-inode --whole-seconds "
                                                 "--sticky-timeouts --3gb --4gb --uname-2.6 --list", "--"))
    if rest:
        ctx.argv(rest)
    else:
        raise ctx.refuse("without a program it starts a shell reading stdin")


def _capsh(ctx: _Ctx, words: list[Word]) -> None:
    """capsh [--opt...] -- ARGS: ARGS go to /bin/bash (`-c STRING` parsed); `--shell=` picks another."""
    for i, w in enumerate(words):
        if w.dynamic:
            raise ctx.refuse(f"argument {w.text!r} is computed at run time")
        if w.text == "--":
            _shell(ctx, words[i + 1:])
            return
        if w.text.startswith(("--shell=", "--exec")):
            raise ctx.refuse(f"{w.text.split('=')[0]} runs a program the rules do not follow")


def _bwrap(ctx: _Ctx, words: list[Word]) -> None:
    """bwrap [--option args...] COMMAND: options take 0, 1 or 2 arguments."""
    i = 0
    while i < len(words) and words[i].text.startswith("--"):
        if words[i].dynamic:
            raise ctx.refuse(f"argument {words[i].text!r} is computed at run time")
        name = words[i].text
        if name == "--":
            i += 1
            break
        i += 1 + _BWRAP_ARGS.get(name, 0)
    ctx.argv(words[i:])


_BWRAP_ARGS = {**{o: 1 for o in "--args --userns --userns2 --pidns --uid --gid --hostname --chdir --unsetenv "
                  "--lock-file --sync-fd --remount-ro --exec-label --file-label --proc --dev --tmpfs --mqueue "
                  "--dir --seccomp --add-seccomp-fd --block-fd --userns-block-fd --info-fd --json-status-fd "
                  "--cap-add --cap-drop --perms --size --argv0".split()},
               **{o: 2 for o in "--setenv --bind --bind-try --dev-bind --dev-bind-try --ro-bind --ro-bind-try "
                  "--file --bind-data --ro-bind-data --symlink --chmod --overlay-src".split()}}


def _code_always(form: str) -> Callable[[_Ctx, list[Word]], None]:
    """Programs that always run commands the line does not show (editors, make, ed, gdb, run-parts)."""

    def handle(ctx: _Ctx, words: list[Word]) -> None:
        ctx.code(form, " ".join(w.text for w in words))

    return handle


@dataclass(frozen=True)
class Interpreter:
    """An interpreter's options: which letters take code, which take another argument, which end options."""

    code: str
    with_arg: str = ""
    long_code: frozenset[str] = frozenset()
    long_arg: frozenset[str] = frozenset()
    ends: str = ""


def _interpreter(spec: Interpreter) -> Callable[[_Ctx, list[Word]], None]:
    """python/perl/ruby/node...: code from an option, a file or stdin is code; the text is kept when written."""

    def handle(ctx: _Ctx, words: list[Word]) -> None:
        form, code, rest = _interpreter_options(ctx, words, spec)
        if form:
            ctx.code(form, code)
        elif not rest or _STDIN_PATHS.fullmatch(rest[0].text):
            ctx.code("stdin")
        else:
            ctx.code("FILE")

    return handle


def _interpreter_options(ctx: _Ctx, words: list[Word], spec: Interpreter) -> tuple[str, str, list[Word]]:
    """(form, code text, operands) for an interpreter's arguments; unknown letters count as flags."""
    i = 0
    while i < len(words) and words[i].text.startswith("-") and words[i].text != "-":
        text = words[i].text
        if text == "--":
            return "", "", words[i + 1:]
        name, eq, value = text.partition("=")
        if name in spec.long_code:
            return name, value if eq else _next_arg(ctx, words, i, name), []
        if text.startswith("--"):
            i += 1 if eq or name not in spec.long_arg else 2
            continue
        for pos, ch in enumerate(text[1:], start=1):
            if ch in spec.code:
                return f"-{ch}", text[pos + 1:] or _next_arg(ctx, words, i, f"-{ch}"), []
            if ch in spec.ends:
                return f"-{ch}", "", []
            if ch in spec.with_arg:
                i += 0 if text[pos + 1:] else 1
                break
        i += 1
    return "", "", words[i:]


_AWK_STRING = r'"(?:[^"\\]|\\.)*"'
_AWK_COMMANDS = re.compile(rf'\bsystem\s*\(\s*({_AWK_STRING})\s*\)|\|&?\s*({_AWK_STRING})|'
                           rf'({_AWK_STRING})\s*\|&?\s*getline')
_AWK = Interpreter(code="e", with_arg="FvfEil", long_code=frozenset({"--source"}),
                   long_arg=frozenset({"--field-separator", "--assign", "--file", "--exec", "--include", "--load"}))


def _awk(ctx: _Ctx, words: list[Word]) -> None:
    """awk [options] 'PROGRAM' [files]: system("cmd") and pipes to or from "cmd" are parsed; a command
    computed in awk, a program file, an include or an extension is code."""
    if any(w.dynamic for w in words):
        raise ctx.refuse("arguments are computed at run time")
    if any(w.text.startswith(("-f", "--file", "-E", "--exec", "-i", "--include", "-l", "--load")) for w in words):
        ctx.code("-f")
        return
    form, program, rest = _interpreter_options(ctx, words, _AWK)
    if not form:
        if not rest:
            raise ctx.refuse("no program")
        program = rest[0].text
    _awk_program(ctx, program)


def _awk_program(ctx: _Ctx, program: str) -> None:
    """Parse the literal commands of an awk program; any other way it could start one is code."""
    for match in _AWK_COMMANDS.finditer(program):
        ctx.script(Word(_awk_unescape(next(g for g in match.groups() if g)[1:-1])))
    rest = re.sub(_AWK_STRING, '""', _AWK_COMMANDS.sub("", program)).replace("||", "")
    if re.search(r"\bsystem\b|\||@load|@include", rest):
        ctx.code("system()", program)


def _awk_unescape(text: str) -> str:
    """An awk string literal's value (the escapes a command would use)."""
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), text)


def _option_values(words: list[Word], names: tuple[str, ...]) -> list[Word]:
    """The values of options `names` wherever they appear: `--name=V`, `--name V`, `-xV`, `-x V`."""
    found: list[Word] = []
    for i, w in enumerate(words):
        for name in names:
            if w.text == name and i + 1 < len(words):
                found.append(words[i + 1])
            elif w.text.startswith(name + "=") and name.startswith("--"):
                found.append(Word(w.text[len(name) + 1:], w.dynamic))
            elif len(name) == 2 and w.text.startswith(name) and len(w.text) > 2 and not name.startswith("--"):
                found.append(Word(w.text[2:], w.dynamic))
    return found


def _command_options(*names: str) -> Callable[[_Ctx, list[Word]], None]:
    """Tools that run the shell command given to some of their options (tar, rsync, zip, man, less...)."""

    def handle(ctx: _Ctx, words: list[Word]) -> None:
        for value in _option_values(words, names):
            ctx.script(value)

    return handle


def _less(ctx: _Ctx, words: list[Word]) -> None:
    """less/more +COMMAND: a pager command run at start, `!cmd` escapes included: code."""
    for w in words:
        if w.text.startswith("+") and len(w.text) > 1:
            ctx.code("+", w.text[1:])


_TAR_COMMANDS = ("--to-command", "--use-compress-program", "-I", "--info-script", "--new-volume-script", "-F",
                 "--rsh-command", "--rmt-command")


def _tar(ctx: _Ctx, words: list[Word]) -> None:
    """tar: --to-command, -I/--use-compress-program, -F/--info-script... run commands; so does
    --checkpoint-action=exec=CMD."""
    _command_options(*_TAR_COMMANDS)(ctx, words)
    for action in _option_values(words, ("--checkpoint-action",)):
        kind, eq, command = action.text.partition("=")
        if kind == "exec" and eq:
            ctx.script(Word(command, action.dynamic))


def _rsync(ctx: _Ctx, words: list[Word]) -> None:
    """rsync -e/--rsh CMD (also at the end of a cluster: -avze CMD), --rsync-path CMD."""
    _command_options("--rsh", "-e", "--rsync-path")(ctx, words)
    for i, w in enumerate(words):
        if re.fullmatch(r"-[a-zA-Z]+e", w.text) and len(w.text) > 2 and i + 1 < len(words):
            ctx.script(words[i + 1])


_SSH = _spec("46AaCfGgKkMNnqsTtVvXxYy", "BbcDEeFIiJLlmOoPpQRSWw")
_SSH_COMMAND_OPTIONS = ("proxycommand", "localcommand", "knownhostscommand")


def _ssh(ctx: _Ctx, words: list[Word]) -> None:
    """ssh [options] HOST [COMMAND...]: -o ProxyCommand/LocalCommand/KnownHostsCommand run here; a
    config file (-F) can hold them too; the remote command is parsed like this line."""
    if ctx.name in ("scp", "sftp"):
        for program in _option_values(words, ("-S",)):
            ctx.argv([program])
    for value in _option_values(words, ("-o",)):
        key, _, command = _ssh_option(value.text)
        if key.lower() in _SSH_COMMAND_OPTIONS:
            ctx.script(Word(command, value.dynamic))
    if _option_values(words, ("-F",)):
        ctx.code("-F")
    if ctx.name == "ssh":
        opts, rest = split_options(ctx, words, _SSH)
        if len(rest) > 1:
            _eval(ctx, rest[1:])


def _ssh_option(text: str) -> tuple[str, str, str]:
    """An `-o Key=Value` / `-o 'Key Value'` option as (key, separator, value)."""
    match = re.match(r"\s*([A-Za-z]+)\s*(=|\s)\s*(.*)", text, re.S)
    return (match.group(1), match.group(2), match.group(3)) if match else (text, "", "")


# Config keys whose value is a shell command (git runs it); `!`-aliases too.
_GIT_COMMAND_KEYS = ("core.pager", "core.editor", "core.sshcommand", "core.fsmonitor", "core.askpass",
                     "core.gitproxy", "sequence.editor", "diff.external", "diff.*.textconv", "diff.*.command",
                     "merge.*.driver", "mergetool.*.cmd", "difftool.*.cmd", "filter.*.clean", "filter.*.smudge",
                     "filter.*.process", "pager.*", "credential.helper", "credential.*.helper", "gpg.program",
                     "gpg.*.program", "uploadpack.packobjectshook", "remote.*.uploadpack", "remote.*.receivepack",
                     "sendemail.smtpserver", "browser.*.cmd", "man.*.cmd", "web.browser", "instaweb.httpd")
# Config keys that make git load hooks, programs or more config from elsewhere.
_GIT_CODE_KEYS = ("core.hookspath", "include.path", "includeif.*.path", "init.templatedir", "alias.*")
_GIT_SUBCOMMAND_COMMANDS = {"rebase": ("-x", "--exec"), "difftool": ("-x", "--extcmd"),
                            "grep": ("-O", "--open-files-in-pager"),
                            "clone": ("-u", "--upload-pack"), "fetch": ("--upload-pack",),
                            "pull": ("--upload-pack",), "ls-remote": ("--upload-pack",),
                            "archive": ("--exec",), "push": ("--receive-pack", "--exec"),
                            "filter-branch": ("--env-filter", "--tree-filter", "--index-filter", "--parent-filter",
                                              "--msg-filter", "--commit-filter", "--tag-name-filter")}


def _git(ctx: _Ctx, words: list[Word]) -> None:
    """git [-c KEY=VALUE]... SUBCOMMAND: command-valued config and aliases are parsed; hook paths and
    includes are code; --exec-path changes where git finds its programs (like PATH); subcommand
    options that run commands (rebase -x, ...) are parsed."""
    i = 0
    while i < len(words) and words[i].text.startswith("-"):
        w = words[i]
        if w.dynamic:
            raise ctx.refuse(f"argument {w.text!r} is computed at run time")
        name, eq, value = w.text.partition("=")
        takes = name in _GIT_GLOBAL_WITH_ARG and not eq
        arg = _next_arg(ctx, words, i, name) if takes else value
        if name == "-c":
            _git_config(ctx, *arg.partition("=")[::2])
        elif name == "--config-env":
            _git_config(ctx, arg.partition("=")[0], "", from_env=True)
        elif name == "--exec-path" and eq:
            ctx.walk.out.append(SimpleCommand((w.text,), ctx.via, "path"))
        i += 2 if takes else 1
    if i < len(words):
        _git_subcommand(ctx, words[i].text, words[i + 1:])


_GIT_GLOBAL_WITH_ARG = frozenset({"-c", "-C", "--git-dir", "--work-tree", "--namespace", "--super-prefix",
                                  "--config-env", "--list-cmds", "--attr-source"})


def _git_subcommand(ctx: _Ctx, name: str, args: list[Word]) -> None:
    """What a git subcommand runs: the commands given to its options, config it writes, bisect run."""
    for value in _option_values(args, _GIT_SUBCOMMAND_COMMANDS.get(name, ())):
        ctx.script(value)
    if name in ("clone", "submodule"):
        for value in _option_values(args, ("-c", "--config")):
            key, _, setting = value.text.partition("=")
            _git_config(ctx, key, setting)
    if name == "config":
        operands = [w for w in args if not w.text.startswith("-")]
        if operands and operands[0].text in ("set", "--add"):
            operands = operands[1:]
        if len(operands) >= 2:
            _git_config(ctx, operands[0].text, operands[1].text, from_env=operands[1].dynamic)
    elif name == "bisect" and args and args[0].text == "run":
        ctx.argv(args[1:])
    elif name == "submodule" and "foreach" in [a.text for a in args]:
        _eval(ctx, [a for a in args[[a.text for a in args].index("foreach") + 1:] if a.text != "--recursive"])


def _git_config(ctx: _Ctx, key: str, value: str, from_env: bool = False) -> None:
    """One config setting on the command line: a command value is parsed, a code value recorded."""
    import fnmatch

    key = key.lower()
    if key.startswith("alias.") and value.startswith("!"):
        ctx.script(Word(value[1:], from_env))
    elif any(fnmatch.fnmatchcase(key, k) for k in _GIT_COMMAND_KEYS):
        if from_env:
            raise ctx.refuse(f"{key} is computed at run time")
        if value.lower() not in ("", "true", "false", "yes", "no", "on", "off", "1", "0"):
            ctx.script(Word(value.removeprefix("!")))
    elif any(fnmatch.fnmatchcase(key, k) for k in _GIT_CODE_KEYS):
        ctx.code(f"-c {key}", value)


_PERL = Interpreter(code="eE", with_arg="IMmdDxiFC")
_PYTHON = Interpreter(code="c", with_arg="WXQ", long_arg=frozenset({"--check-hash-based-pycs"}), ends="m")
_RUBY = Interpreter(code="e", with_arg="rICEFx")
_NODE = Interpreter(code="ep", with_arg="r", long_code=frozenset({"--eval", "--print"}),
                    long_arg=frozenset({"--require", "--import", "--loader", "--experimental-loader"}))
_PHP = Interpreter(code="rBRFE", with_arg="cdfz")
_LUA = Interpreter(code="e", with_arg="l")

_TRACE = _spec("cCdDfFhikqrtTvVwxyYzZ", "abeEIoOpPsSuXU", "--summary-only --summary --follow-forks "
               "--output-separately --quiet --verbose --daemonize --seccomp-bpf --kill-on-exit --no-abbrev "
               "--decode-fds --decode-pids --absolute-timestamps --relative-timestamps --syscall-times "
               "--instruction-pointer --stack-trace --summary-wall-clock --successful-only --failed-only "
               "--columns",
               "--output --trace --signal --status --env --user --attach --trace-path --string-limit "
               "--summary-sort --summary-columns --const-print-style --decode-fds --quiet --silence "
               "--inject --fault --argv0 --timestamps --secontext --decode-pids")

WRAPPERS: dict[str, Callable[[_Ctx, list[Word]], None]] = {
    "env": _env,
    "sudo": _sudo,
    "doas": _generic(_spec("nsL", "uC")),
    "pkexec": _generic(_spec(long_flags="--disable-internal-agent --keep-cwd", long_with_arg="--user")),
    "su": _command_string_option("-c", "--command", "--session-command"),
    "runuser": _command_string_option("-c", "--command", "--session-command"),
    "script": _command_string_option("-c", "--command"),
    "sg": _sg,
    "nice": _generic(_spec("", "n", "", "--adjustment", numeric=True)),
    "nohup": _generic(_spec()),
    "timeout": _generic(_spec("v", "sk", "--preserve-status --foreground --verbose", "--signal --kill-after", 1)),
    "stdbuf": _generic(_spec("", "ioe", "", "--input --output --error")),
    "setsid": _generic(_spec("cfw", "", "--ctty --fork --wait")),
    "ionice": _generic(_spec("t", "cnpPu", "--ignore", "--class --classdata --pid --pgid --uid"), "p P u"),
    "taskset": _generic(_spec("apc", "", "--all-tasks --pid --cpu-list", "", 1), "p"),
    "chrt": _generic(_spec("abdfiormvRe", "TPD", "--all-tasks --batch --deadline --fifo --idle --other "
                           "--rr --max --verbose --reset-on-fork --ext", "--sched-runtime --sched-period "
                           "--sched-deadline", 1), "p"),
    "chroot": _generic(_spec("", "", "--skip-chdir", "--userspec --groups", 1)),
    "time": _generic(_spec("apvq", "fo", "--append --portability --verbose --quiet", "--format --output")),
    "exec": _generic(_spec("cl", "a")),
    "command": _generic(_spec("pvV")),
    "builtin": _generic(_spec()),
    "unshare": _generic(_spec("imnpuUCTfrcl", "SGRw", "--ipc --mount --net --pid --uts --user --cgroup --time "
                              "--fork --kill-child --mount-proc --map-root-user --map-current-user --map-auto "
                              "--keep-caps --propagation --setgroups", "--setuid --setgid --root --wd "
                              "--map-user --map-group --map-users --map-groups --monotonic --boottime")),
    "setpriv": _generic(_spec("d", "", "--dump --no-new-privs --clear-groups --keep-groups --init-groups "
                              "--reset-env", "--inh-caps --ambient-caps --bounding-set --ruid --euid --rgid "
                              "--egid --reuid --regid --groups --securebits --pdeathsig --selinux-label "
                              "--apparmor-profile --landlock-access --landlock-rule"), "d --dump"),
    "setarch": _setarch, "linux32": _setarch, "linux64": _setarch,
    "prlimit": _generic(_spec("vV", "p", "--verbose --noheadings --raw", "--pid --output --as --core --cpu "
                              "--data --fsize --locks --memlock --msgqueue --nice --nofile --nproc --rss "
                              "--rtprio --rttime --sigpending --stack"), "p --pid"),
    "strace": _generic(_TRACE, "p --attach"),
    "ltrace": _generic(_spec("bcCfhiLrStTV", "aAeFlnopsuwx", "--demangle --library --help --version",
                             "--align --indent --output --config"), "p"),
    "nsenter": _generic(_spec("amuinpUCTFZr", "tSGwR", "--all --mount --uts --ipc --net --pid --user --cgroup "
                              "--time --preserve-credentials --no-fork --follow-context", "--target --setuid "
                              "--setgid --root --wd --wdns")),
    "capsh": _capsh,
    "bwrap": _bwrap,
    "systemd-run": _generic(_spec("qrtPGSdh", "pEHMu", "--user --system --scope --pty --pipe --quiet --wait "
                                  "--collect --no-block --shell --same-dir --remain-after-exit --no-ask-password",
                                  "--unit --property --description --slice --uid --gid --nice --working-directory "
                                  "--setenv --machine --host --service-type --timer-property --path-property "
                                  "--socket-property --on-active --on-boot --on-startup --on-calendar")),
    "numactl": _generic(_spec("alHs", "iCmNpPbwc", "--all --localalloc --hardware --show --balancing",
                              "--interleave --physcpubind --membind --cpunodebind --preferred --preferred-many "
                              "--weighted-interleave")),
    "valgrind": _generic(_spec("qvh", "", "", "")),
    "fakeroot": _generic(_spec("uh", "sil", "--unknown-is-real", "--lib --faked")),
    "faketime": _generic(_spec("fh", "m", "", "", 1)),
    "torsocks": _generic(_spec("iqd", "uapP", "", "")),
    "proxychains": _generic(_spec("q", "f")), "proxychains4": _generic(_spec("q", "f")),
    "chronic": _generic(_spec("ev")),
    "ssh-agent": _generic(_spec("cDdks", "aEPt")),
    "dbus-run-session": _generic(_spec(long_with_arg="--config-file --dbus-daemon")),
    "xvfb-run": _generic(_spec("ah", "nlsfe", "", "--server-num --server-args --auth-file --error-file")),
    "catchsegv": _generic(_spec()),
    "sshpass": _generic(_spec("ev", "pfdP")),
    "rlwrap": _generic(_spec("AcibBrRtw", "aCDfFgHlopPsqSz")),
    "unbuffer": _generic(_spec("p")),
    "cpulimit": _generic(_spec("kriv", "lpe", "--kill --restore --include-children --verbose",
                               "--limit --pid --exe"), "p e --pid --exe"),
    "xargs": _xargs,
    "find": _find,
    "eval": _eval,
    "alias": _alias,
    "trap": _trap,
    ".": _source,
    "source": _source,
    **{name: _declare for name in ("export", "declare", "typeset", "readonly", "local")},
    "watch": _watch,
    "flock": _flock,
    "busybox": _applet,
    "git": _git,
    "awk": _awk, "gawk": _awk, "mawk": _awk, "nawk": _awk,
    "tar": _tar,
    "rsync": _rsync,
    "zip": _command_options("-TT", "--unzip-command"),
    "man": _command_options("-P", "--pager", "-H", "--html"),
    "less": _less, "more": _less,
    "ssh": _ssh, "scp": _ssh, "sftp": _ssh, "slogin": _ssh,
    **{name: _interpreter(_PYTHON) for name in ("python", "python2", "python3") + tuple(
        f"python3.{minor}" for minor in range(6, 15))},
    "perl": _interpreter(_PERL), "ruby": _interpreter(_RUBY), "node": _interpreter(_NODE),
    "nodejs": _interpreter(_NODE), "php": _interpreter(_PHP), "lua": _interpreter(_LUA),
    **{name: _code_always("commands") for name in ("vim", "vi", "nvim", "view", "vimdiff", "rvim", "ex", "ed",
                                                    "red", "gdb", "expect", "tclsh", "wish", "tmux", "screen",
                                                    "parallel", "sem")},
    "make": _code_always("recipes"), "gmake": _code_always("recipes"),
    "run-parts": _code_always("DIR"),
    **{sh: _shell for sh in ("sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "rbash", "yash", "posh")},
}
