"""Find every program a shell command line would run, so a policy can judge each one.

The line is parsed with bash's grammar (bashlex): every simple command in lists, pipelines,
subshells, `$(...)`, backticks, process substitutions and redirections is found, and
wrappers that run another program (env, nice, nohup, timeout, xargs, sudo, `sh -c`, eval,
find -exec, ...) are looked through. Anything that cannot be decided statically (a syntax
error, a construct bashlex does not support, a program name computed at run time, an
unknown wrapper option) raises `UnparsableCommand`: refused, never guessed.

Limits, by nature: an interpreter (`python -c`, `perl -e`) or a script file can run
anything; command rules judge what is typed, the OS (sudoers, file modes) and the
sandbox contain what runs.
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
_GLOB = re.compile(r"[*?\[]")
_HIDDEN_SUBST = ("$(", "`", "<(", ">(")
_DYNAMIC_KINDS = {"parameter", "commandsubstitution", "processsubstitution"}
_PASSIVE_KINDS = {"operator", "pipe", "reservedword", "tilde"}


class UnparsableCommand(PolicyDenied):
    """The command line cannot be checked statically, so it is refused."""

    default_hint = "write the command without run-time computed program names or unsupported syntax"


@dataclass(frozen=True)
class SimpleCommand:
    """One program the shell would start, with its arguments and the wrappers it sits behind."""

    argv: tuple[str, ...]
    via: tuple[str, ...] = ()

    @property
    def program(self) -> str:
        """The program's base name: `/usr/bin/sudo` and `sudo` are the same program."""
        return os.path.basename(self.argv[0]) or self.argv[0]


@dataclass(frozen=True)
class Word:
    """A shell word after quote removal; `dynamic` when expansions decide its value at run time."""

    text: str
    dynamic: bool = False


@dataclass
class _Walk:
    out: list[SimpleCommand] = field(default_factory=list)


def simple_commands(cmdline: str) -> list[SimpleCommand]:
    """Every program `cmdline` would run, outermost first; raises UnparsableCommand."""
    walk = _Walk()
    _parse_into(cmdline, walk, depth=0, via=())
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
    """Visit a node: check hidden substitutions, collect commands, recurse."""
    kind = node.kind
    if kind in ("parameter", "heredoc"):
        _refuse_hidden_substitution(getattr(node, "value", "") or "")
    elif kind not in _PASSIVE_KINDS | {"word", "assignment", "redirect", "list", "pipeline", "compound",
                                       "if", "for", "while", "until", "function", "command",
                                       "commandsubstitution", "processsubstitution"}:
        raise UnparsableCommand(f"unsupported shell construct: {kind}")
    for child in _children(node):
        _walk_node(child, source, walk, depth, via)
    if kind == "command":
        words = [_word(p, source) for p in node.parts if p.kind == "word"]
        _resolve(words, walk, depth, via)


def _refuse_hidden_substitution(text: str) -> None:
    """bashlex leaves `${x:-$(cmd)}` and here-doc bodies unparsed: refuse commands hidden there."""
    if any(marker in text for marker in _HIDDEN_SUBST):
        raise UnparsableCommand(f"command substitution inside {text[:40]!r} cannot be checked")


def _word(node, source: str) -> Word:
    """A bashlex word node as a Word, dynamic when it holds a parameter or substitution.

    bashlex's own `word` text mishandles quotes in some nestings (`'a '"'"'b'` keeps the
    inner quotes), so static words are unquoted again from the source text.
    """
    if any(p.kind in _DYNAMIC_KINDS for p in (node.parts or [])):
        return Word(node.word, True)
    start, end = node.pos
    return Word(unquote(source[start:end]))


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
    """Record the program `words` runs, then look through it if it is a wrapper."""
    if not words:
        return
    head = words[0]
    if head.dynamic or _GLOB.search(head.text) or not head.text:
        raise UnparsableCommand(f"program name {head.text!r} is computed at run time")
    cmd = SimpleCommand(tuple(w.text for w in words), via)
    walk.out.append(cmd)
    handler = WRAPPERS.get(cmd.program)
    if handler is not None:
        handler(_Ctx(cmd.program, walk, depth, via + (cmd.program,)), words[1:])


@dataclass(frozen=True)
class _Ctx:
    """Where a wrapper handler sends what it finds."""

    name: str
    walk: _Walk
    depth: int
    via: tuple[str, ...]

    def argv(self, words: list[Word]) -> None:
        """The wrapper runs `words` as a command."""
        _resolve(words, self.walk, self.depth, self.via)

    def script(self, word: Word) -> None:
        """The wrapper runs `word` as a shell script string."""
        if word.dynamic:
            raise UnparsableCommand(f"{self.name}: command string is computed at run time")
        _parse_into(word.text, self.walk, self.depth + 1, self.via)

    def refuse(self, why: str) -> UnparsableCommand:
        """An error naming this wrapper."""
        return UnparsableCommand(f"{self.name}: {why}")


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
        if any(o in opts for o in no_command_opts):
            return
        rest = _skip_operands(ctx, rest, spec.positionals)
        if rest:
            ctx.argv(rest)

    return handle


def _skip_assignments(rest: list[Word]) -> list[Word]:
    """Drop leading NAME=value words (env, sudo)."""
    while rest and not rest[0].dynamic and _ASSIGNMENT.match(rest[0].text):
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
        rest = [Word(t) for t in _shlex_split(ctx, split)] + rest
    rest = _skip_assignments(rest)
    if rest:
        ctx.argv(rest)


def _shlex_split(ctx: _Ctx, text: str) -> list[str]:
    """POSIX word splitting for env -S; malformed quoting refuses."""
    try:
        return shlex.split(text)
    except ValueError as e:
        raise ctx.refuse(f"cannot split {text!r}: {e}") from e


_SHELL = _spec("abefhikmnprtuvxBCEHPTlcsD", "oO", "--login --noprofile --norc --posix --restricted "
               "--verbose --noediting --debugger --dump-strings --dump-po-strings --wordexp --help "
               "--version", "--rcfile --init-file")


def _shell(ctx: _Ctx, words: list[Word]) -> None:
    """sh/bash [-options] -c STRING [name [args]]: the string is parsed; stdin scripts are refused."""
    words = [Word("-" + w.text[1:]) if w.text.startswith("+") and not w.dynamic else w for w in words]
    opts, rest = split_options(ctx, words, _SHELL)
    if "c" in opts:
        if not rest:
            raise ctx.refuse("-c without a command string reads it at run time")
        ctx.script(rest[0])
    elif not rest or "s" in opts or "i" in opts:
        raise ctx.refuse("a shell reading commands from stdin cannot be checked")


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
    rest = _skip_assignments(rest)
    if rest:
        ctx.argv(rest)


# -e, -i and -l take an argument only when it is attached (-i{}), so alone they are flags.
_XARGS = _spec("0rtpxoeil", "adEILnPs", "--null --no-run-if-empty --verbose --interactive --exit "
               "--open-tty --show-limits", "--arg-file --delimiter --eof --replace --max-lines "
               "--max-args --max-procs --max-chars --process-slot-var")


def _xargs(ctx: _Ctx, words: list[Word]) -> None:
    """xargs [options] [COMMAND [initial-args]]; without a command it runs echo."""
    opts, rest = split_options(ctx, words, _XARGS)
    if rest:
        ctx.argv(rest)



def _find(ctx: _Ctx, words: list[Word]) -> None:
    """find ... -exec COMMAND ... ; (also -execdir, -ok, -okdir)."""
    i = 0
    while i < len(words):
        if words[i].text in ("-exec", "-execdir", "-ok", "-okdir") and not words[i].dynamic:
            end = _find_end(words, i + 1)
            ctx.argv(words[i + 1:end])
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
    "ionice": _generic(_spec("t", "cnpPu", "--ignore", "--class --classdata --pid --pgid --uid"), "pPu"),
    "taskset": _generic(_spec("apc", "", "--all-tasks --pid --cpu-list", "", 1), "p"),
    "chrt": _generic(_spec("abdfiormvRe", "TPD", "--all-tasks --batch --deadline --fifo --idle --other "
                           "--rr --max --verbose --reset-on-fork --ext", "--sched-runtime --sched-period "
                           "--sched-deadline", 1), "p"),
    "chroot": _generic(_spec("", "", "--skip-chdir", "--userspec --groups", 1)),
    "time": _generic(_spec("apvq", "fo", "--append --portability --verbose --quiet", "--format --output")),
    "exec": _generic(_spec("cl", "a")),
    "command": _generic(_spec("pvV")),
    "builtin": _generic(_spec()),
    "xargs": _xargs,
    "find": _find,
    "eval": _eval,
    "watch": _watch,
    "flock": _flock,
    "busybox": _applet,
    **{sh: _shell for sh in ("sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "rbash", "yash", "posh")},
}
