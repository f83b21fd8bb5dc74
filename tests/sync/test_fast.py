"""`bridge push` without Typer (bridge.commands.push_fast): the same lines and exit codes as the Typer command."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from bridge.commands.push_fast import parse
from tests.conftest import BRIDGE
from tests.sync.test_push import Root, commit, server_root, ssh_ws  # noqa: F401 - fixtures

NONE = {"target": None, "on": None, "wip": False, "no_deploy": False, "force": False, "redeploy": False,
        "verbose": False}


@pytest.mark.parametrize("args, found", [
    ([], {}),
    (["prod"], {"target": "prod"}),
    (["--on", "web"], {"on": "web"}),
    (["--on=web", "--on", "prod"], {"on": "prod"}),
    (["--on="], {"on": ""}),
    (["prod", "--wip", "--no-deploy", "--force"], {"target": "prod", "wip": True, "no_deploy": True, "force": True}),
    (["--force", "a,b"], {"target": "a,b", "force": True}),
    (["--redeploy"], {"redeploy": True}),
])
def test_the_everyday_forms_are_parsed_as_typer_reads_them(args: list[str], found: dict) -> None:
    assert parse(args).as_dict() == {**NONE, **found}


@pytest.mark.parametrize("args", [
    ["--help"], ["-h"], ["prod", "--help"], ["a", "b"], ["--on"], ["--on", "--wip"], ["--", "prod"],
    ["--wip=1"], ["--bogus"], ["-"], ["--no-deploy", "x", "y"],
])
def test_anything_else_is_left_to_typer(args: list[str]) -> None:
    assert parse(args) is None


@pytest.mark.parametrize("args", [
    [], ["prod"], ["--on", "web"], ["--on=web", "--on", "prod"], ["prod", "--wip", "--no-deploy", "--force"],
    ["--redeploy", "-v"], ["--verbose", "a,b", "--on", "x"],
])
def test_the_hand_parser_and_typer_give_the_same_record(args: list[str], monkeypatch) -> None:
    """Both are made from bridge.sync.options.PUSH: the same argv gives the same PushOptions."""
    from bridge.cli import build_app
    from bridge.commands import push_fast

    seen: list = []
    monkeypatch.setattr(push_fast, "run", lambda options: seen.append(options) or 0)
    build_app(("sync",))(args=["push", *args], prog_name="bridge", standalone_mode=False)
    assert seen == [parse(args)]


def normalized(text: str) -> str:
    """Output with what differs between two deploys (times, shas, durations) masked."""
    text = re.sub(r"\d{8}T\d{6}\.\d{3}Z", "TIME", text)
    text = re.sub(r"\b[0-9a-f]{12}\b", "SHA", text)
    return re.sub(r"\d+\.\d\ds", "Ns", text)


def test_fast_and_typer_paths_print_the_same_and_exit_the_same(bridge, ssh_ws: Path, server_root: Root) -> None:
    assert bridge("push", cwd=ssh_ws).code == 0  # the first deploy is a full checkout; compare two incremental
    runs = []
    for args in (["push", "prod"], ["push", "--", "prod"]):  # `--` is Typer's: the fast path declines it
        commit(ssh_ws, {"app/main.py": f"print({len(runs)})\n"})
        runs.append(bridge(*args, cwd=ssh_ws))
    fast, typer = runs
    assert (fast.code, typer.code) == (0, 0), runs
    assert normalized(fast.out) == normalized(typer.out) and fast.err == typer.err
    assert "prod: deployed" in fast.out and len(server_root.log()) == 3

    refused = [bridge(*args, cwd=ssh_ws) for args in (["push", "nowhere"], ["push", "--", "nowhere"])]
    assert refused[0].code == refused[1].code != 0 and refused[0].err == refused[1].err and refused[0].err


def test_push_loads_no_typer_and_help_still_comes_from_typer(bridge, ssh_ws: Path) -> None:
    commit(ssh_ws, {"app/main.py": "print('fast')\n"})
    proc = subprocess.run([BRIDGE[0], "-X", "importtime", *BRIDGE[1:], "push"], cwd=ssh_ws, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "bridge.commands.push_fast" in imported
    assert not imported & {"typer", "click", "rich"}
    helped = bridge("push", "--help", cwd=ssh_ws)
    assert helped.code == 0 and "Usage: bridge push" in helped.out and "--no-deploy" in helped.out
    typo = bridge("push", "--forse", cwd=ssh_ws)
    assert typo.code == 2 and "No such option" in typo.err


def test_an_unreachable_server_is_one_clear_error_exit_255(bridge, ssh_ws: Path, sshd) -> None:
    sshd.stop()
    result = bridge("push", cwd=ssh_ws)
    assert result.code == 255, result
    assert "prod: unreachable: cannot connect to" in result.err and result.err.count("cannot connect") == 1
