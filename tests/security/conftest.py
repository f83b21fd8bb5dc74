"""Fixtures for security tests: a `bridge` executable running the real main(), a guard runner, and a
real sshd where a sudo-capable account logs in through the guard (`guarded`)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.accounts import Account, make_account
from tests.conftest import REPO, Home, Result
from tests.sshd import SSHServer, keygen

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


@dataclass
class Guarded:
    """A real sshd where `account` (sudo NOPASSWD: ALL) logs in with keys that `bridge keys add` granted.

    Its AuthorizedKeysFile is `keys/%u` in a root-owned folder the account can read but not
    write, as the README advises; the guard runs from `bridge` (installed in a venv any account
    can run) and writes `log`, in a folder the account owns until the audit writer service lands.
    """

    server: SSHServer
    account: Account
    root: Path
    bridge: Path
    home: Home

    @property
    def keys(self) -> Path:
        return self.root / "authorized_keys"

    @property
    def log(self) -> Path:
        return self.root / "log" / "audit.jsonl"

    def keys_add(self, role: str, *extra: str, user: str | None = None, file: Path | None = None) -> Result:
        """`bridge keys add` as root for the home's key, into the account's root-owned key file."""
        argv = [str(self.bridge), "keys", "add", user or self.account.name, "--role", role,
                "--key", f"{self.home.key}.pub", "--file", str(file or self.keys / self.account.name),
                "--audit", str(self.log), *extra]
        env = {k: v for k, v in self.home.env.items() if k != "PYTHONPATH"}  # the installed bridge, as an admin runs it
        result = _result(subprocess.run(argv, capture_output=True, env=env, timeout=120))
        assert "Traceback (most recent call last)" not in result.err, result
        return result

    def grant(self, role: str, *extra: str) -> None:
        result = self.keys_add(role, *extra)
        assert result.code == 0, result

    def ssh_argv(self, *options: str, login: str | None = None) -> list[str]:
        """A plain OpenSSH client for the account (or `login`), trusting only this server's host key."""
        return ["ssh", "-F", "/dev/null", "-i", str(self.home.key), "-p", str(self.server.port), "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={self.home.ssh / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
                *options, f"{login or self.account.name}@{self.server.host}"]

    def ssh(self, command: str | None, *options: str, input: bytes | None = None,
            login: str | None = None) -> subprocess.CompletedProcess:
        argv = [*self.ssh_argv(*options, login=login), *([command] if command is not None else [])]
        return subprocess.run(argv, capture_output=True, env=self.home.env, timeout=120, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def entries(self) -> list[dict]:
        return audit_lines(self.log)

    def unguarded_ssh(self, command: str, *options: str) -> subprocess.CompletedProcess:
        """The same account through a second, unrestricted key: what the same command does without the guard."""
        plain = self.home.ssh / "id_plain"
        if not plain.exists():
            keygen(plain)
            with (self.keys / self.account.name).open("a") as f:
                f.write(plain.with_suffix(".pub").read_text())
        argv = self.ssh_argv("-o", "IdentitiesOnly=yes", *options)
        argv[argv.index(str(self.home.key))] = str(plain)
        return subprocess.run([*argv, command], capture_output=True, env=self.home.env, timeout=120,
                              stdin=subprocess.DEVNULL)


@pytest.fixture
def guarded(sshd_factory: Callable[..., SSHServer], sudo_account: Account, system_bridge: Path,
            home: Home) -> Iterator[Guarded]:
    """A sudo_account behind the guard on a real sshd (AcceptEnv *: the client may send any variable)."""
    root = Path(tempfile.mkdtemp(prefix="bridge-guarded-", dir="/var/tmp"))
    root.chmod(0o755)
    (root / "authorized_keys").mkdir(mode=0o755)
    (root / "log").mkdir(mode=0o755)
    os.chown(root / "log", sudo_account.uid, sudo_account.gid)
    server = sshd_factory(extra_config=["AcceptEnv *", f"Match User {sudo_account.name}",
                                        f"    AuthorizedKeysFile {root}/authorized_keys/%u"])
    yield Guarded(server, sudo_account, root, system_bridge, home)
    shutil.rmtree(root, ignore_errors=True)


@contextmanager
def owned_pair(guarded: "Guarded", prefix: str, make: Callable[[Path], None] = Path.mkdir) -> Iterator[tuple[Path, Path]]:
    """`app` and `other`, made by `make`, under a fresh /var/tmp folder the guarded account owns and can
    reach (pytest's tmp is in root's reach only); removed afterwards."""
    top = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    top.chmod(0o755)
    pair = top / "app", top / "other"
    for folder in pair:
        make(folder)
    subprocess.run(["chown", "-R", f"{guarded.account.uid}:{guarded.account.gid}", str(top)], check=True)
    try:
        yield pair
    finally:
        shutil.rmtree(top)
