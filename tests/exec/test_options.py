"""One command model for `bridge exec`: the keeper path, the in-process fast path and Typer agree."""
from __future__ import annotations

import pytest

from bridge.exec.options import EXEC, parse
from tests.exec.exec_fixtures import Target, target  # noqa: F401 - fixtures


def test_a_missing_python_file_is_one_usage_line_on_every_path(target: Target, home) -> None:
    """Through the keeper, --no-reuse and Typer (--tty is Typer's): exit 2, the cause, no traceback."""
    warm = target.exec("--python", "missing.py")
    direct = target.exec("--no-reuse", "--python", "missing.py")
    assert (warm.code, warm.err) == (direct.code, direct.err) == (2, warm.err)
    assert warm.err.startswith("bridge: error: cannot read missing.py: No such file or directory\n"), warm.err


ARGV = [
    ["prod", "--", "uname", "-a"], ["--on", "web", "--", "true"], ["--on=web", "prod", "--", "x"],
    ["--on", "web", "uptime"], ["-e", "A=1", "--env", "B=2=3", "--env=C=", "--", "env"], ["--env", "A=1", "--env", "A=2"],
    ["--timeout", "1.5", "--forks", "3", "--json", "--", "x"], ["--timeout=0", "--", "x"], ["--cwd=", "--", "pwd"],
    ["--python", "job.py"], ["--python=-", "prod"], ["--sandbox", "--no-reuse", "--", "id"], ["--", "--json"],
    ["prod"], [], ["--python", "job.py", "--", "x"], ["--forks", "1_0", "--", "x"], ["--", "a", "--", "b"],
]
TYPER_ONLY = [
    ["--help"], ["-h"], ["--tty", "--", "x"], ["-t", "--", "x"], ["--sudo", "--", "x"], ["a", "b", "--", "x"],
    ["--on", "web", "a", "b"], ["--timeout", "soon", "--", "x"], ["--forks", "2.5", "--", "x"], ["--on"],
    ["--json=1", "--", "x"], ["--env", "NOEQUALS", "--", "x"], ["--bogus", "--", "x"], ["-eA=1", "--", "x"],
    ["--cwd", "--json", "--", "x"], ["-", "--", "x"], ["prod", "--timeout", "-1", "--", "x"],
]


def _through_typer(args: list[str], monkeypatch) -> object:
    """What the Typer command hands bridge.exec.command.execute for `bridge exec ARGS`, or how it refused."""
    import click

    from bridge.cli import build_app
    from bridge.commands import exec as exec_command
    from bridge.errors import BridgeError
    from bridge.exec import command

    seen: list = []
    monkeypatch.setattr(command, "execute", lambda options: seen.append(options) or 0)
    monkeypatch.setattr(exec_command, "_recording", lambda *a: _null())
    try:
        build_app(("exec",))(args=["exec", *args], prog_name="bridge", standalone_mode=False)
    except (click.ClickException, BridgeError) as e:
        return f"refused: {type(e).__name__}"
    return seen[0].replace(record=None) if seen else "help"


def _null():
    import contextlib

    return contextlib.nullcontext(None)


@pytest.mark.parametrize("args", ARGV)
def test_the_fast_parser_and_typer_give_the_same_record(args: list[str], monkeypatch) -> None:
    fast = parse(args)
    assert fast is not None, "an everyday form must not need Typer"
    assert fast == _through_typer(args, monkeypatch)


@pytest.mark.parametrize("args", TYPER_ONLY)
def test_what_the_fast_parser_leaves_to_typer_typer_reads_or_refuses(args: list[str], monkeypatch) -> None:
    assert parse(args) is None
    assert _through_typer(args, monkeypatch) is not None


def test_the_typer_command_has_exactly_the_declared_flags() -> None:
    """Generated from EXEC: every declared name is an option, and no option is undeclared."""
    from bridge.cli import build_app
    import typer.main

    command = typer.main.get_command(build_app(("exec",))).commands["exec"]  # type: ignore[attr-defined]
    names = {n for p in command.params for n in p.opts if n.startswith("-")} - {"--help", "-h"}
    assert names == {n for flag in EXEC.flags for n in flag.names}
    helps = {p.name: p.help for p in command.params if p.opts[0].startswith("-") and p.name != "help"}
    assert helps == {flag.field: flag.help for flag in EXEC.flags}


def test_the_audit_line_finds_env_values_as_the_parser_does() -> None:
    from bridge.exec.options import env_given

    args = ["exec", "-e", "A=1", "--env", "B=2", "--env=C=3", "--env", "NOEQ", "--", "x", "--env", "D=4"]
    assert env_given(args) == {"A": "1", "B": "2", "C": "3"}
    assert parse([*args[1:6], *args[8:]]).env == env_given(args)
    assert env_given(["push", "--env", "A=1"]) == {}
