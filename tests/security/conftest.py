"""Fixtures for security tests: a `bridge` executable running the real main(), and a guard runner."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.accounts import Account, make_account
from tests.conftest import REPO, Home, Result

SHIM = """#!{python}
import sys
if sys.flags.no_site:  # started as a key line starts bridge (python -I -S): site folders come from us
    import site
    site.main()
sys.path.insert(0, {repo!r})
import bridge.cli as cli
cli.main()
"""


@pytest.fixture(scope="session")
def bridge_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An executable named `bridge` (what authorized_keys lines point at) that runs bridge.cli.main()."""
    path = tmp_path_factory.mktemp("bin") / "bridge"
    path.write_text(SHIM.format(python=sys.executable, repo=str(REPO)))
    path.chmod(0o755)
    return path


def _result(proc: subprocess.CompletedProcess) -> Result:
    return Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"),
                  proc.stdout, proc.stderr)


@pytest.fixture
def sec(home: Home, bridge_exe: Path) -> Callable[..., Result]:
    """Run `bridge ARGS` through the executable, in the isolated home; no traceback may leak."""

    def run(*args: str, input: bytes | str | None = None, env: dict | None = None, timeout: float = 60) -> Result:
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run([str(bridge_exe), *args], input=data, capture_output=True,
                              env={**home.env, **(env or {})}, timeout=timeout)
        result = _result(proc)
        assert "Traceback (most recent call last)" not in result.err, result
        return result

    return run


@pytest.fixture
def audit_log(tmp_path: Path) -> Path:
    """Where the guard under test writes its audit lines."""
    return tmp_path / "server" / "audit.jsonl"


@pytest.fixture
def runner() -> Iterator[Account]:
    """An unprivileged account (no sudo) for a root login's `run_as`; removed afterwards."""
    account = make_account("br")
    yield account
    account.remove()


def run_as_policy(folder: Path, account: Account, users: str = "{}") -> Path:
    """A policy whose no-sudo built-in roles run as `account` (tests log in as root), with `users` as given."""
    path = folder / "guard-policy.yaml"
    path.write_text(f"""roles:
  viewer: {{permissions: [status, pull, audit], run_as: {account.name}}}
  operator: {{permissions: [status, pull, push, exec, shell, audit], run_as: {account.name}}}
users: {users}
""")
    return path


@pytest.fixture
def guard(sec: Callable[..., Result], audit_log: Path, runner: Account, tmp_path: Path) -> Callable[..., Result]:
    """Run `bridge guard --as USER` exactly as sshd does: the request in SSH_ORIGINAL_COMMAND, settings in argv.

    The guard runs as root here, so by default its policy gives the no-sudo roles `runner` as run_as.
    """
    default_policy = run_as_policy(tmp_path, runner)

    def run(user: str, command: str | None, role: str | None = "operator", policy: Path | None = None,
            input: bytes | str | None = b"", env: dict | None = None, args: tuple[str, ...] = ()) -> Result:
        extra = {"SSH_CLIENT": "192.0.2.7 50000 22", **(env or {})}
        if command is not None:
            extra["SSH_ORIGINAL_COMMAND"] = command
        argv = ["guard", "--as", user, "--audit", str(audit_log), "--policy", str(policy or default_policy), *args]
        argv += ["--role", role] if role else []
        return sec(*argv, input=input, env=extra)

    return run


def audit_lines(path: Path) -> list[dict]:
    """The JSON entries of an audit log."""
    import json

    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def files_under(*folders: Path) -> list[Path]:
    """Every regular file below the folders."""
    return [Path(root) / name for folder in folders for root, _d, names in os.walk(folder) for name in names]
