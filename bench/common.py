"""Bench helpers: time whole commands, run a bench sshd as a user with empty rc files, print ratio tables.

Absolute times drift 10–50 % here from run to run, so every table compares bridge with its
anchor measured in the same run and prints the ratio.
"""
from __future__ import annotations

import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.sshd import SSHServer, free_port, keygen  # noqa: E402

BENCH_USER = "bridgebench"
PYTHON = sys.executable  # not the pyenv shim on PATH, which adds ~100 ms per call
LAUNCHER = Path(PYTHON).parent / "bridge"  # what `pip install` put on PATH: bin/bridge of this repo


def bridge_argv() -> list[str]:
    """The installed `bridge` command, as a user runs it (sh launcher, then python -S)."""
    if not LAUNCHER.is_file() or not LAUNCHER.read_text().startswith("#!/bin/sh"):
        sys.exit(f"bench: {LAUNCHER} is not bridge's launcher; install this checkout: {PYTHON} -m pip install -e .")
    return [str(LAUNCHER)]


BRIDGE = bridge_argv()
# bridge from this checkout on a plain sys.path entry, as a regular install finds it in site-packages
# (the editable install's finder is a .pth hook, which the launcher only runs as a fallback)
os.environ["PYTHONPATH"] = str(REPO)


def compile_bridge() -> None:
    """Write bridge's .pyc files, as `pip install` does: this machine sets PYTHONDONTWRITEBYTECODE, so
    without this every timed run would recompile the sources (~20 ms) and no real install does that."""
    import compileall

    compileall.compile_dir(str(REPO / "bridge"), quiet=1)


def median_ms(run: Callable[[], object], repeat: int = 10, warmup: int = 1) -> float:
    """Median wall time of `run()` in milliseconds."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def interleaved_ms(runs: dict[str, Callable[[], None]], repeat: int = 10) -> dict[str, float]:
    """Median ms of each run, taken in turns so load from elsewhere hits every case alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm-up (starts the keeper and its connection for warm runs)
    for _ in range(repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def command(argv: Sequence[str], env: dict | None = None, check: bool = True, **kw) -> Callable[[], None]:
    """A callable that runs `argv` to completion, discarding output."""
    def run() -> None:
        proc = subprocess.run(list(argv), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()[-400:]}")
    return run


def ensure_bench_user() -> pwd.struct_passwd:
    """A login user with /bin/sh and an empty home, so no rc file (pyenv init, …) taxes remote commands."""
    try:
        pwd.getpwnam(BENCH_USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", BENCH_USER], check=True)
    # '*': no password login, but not "locked" (sshd without PAM refuses locked accounts, keys included)
    subprocess.run(["usermod", "-p", "*", BENCH_USER], check=True)
    return pwd.getpwnam(BENCH_USER)


class BenchEnv:
    """An isolated HOME with a client key, and sshd servers that let the bench user in with it."""

    def __init__(self) -> None:
        compile_bridge()
        self.dir = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
        os.chmod(self.dir, 0o755)
        self.home = self.dir / "home"
        (self.home / ".ssh").mkdir(parents=True, mode=0o700)
        self.key = keygen(self.home / ".ssh" / "id_ed25519")
        self.user = ensure_bench_user()
        self.servers: list[SSHServer] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("SSH_", "BRIDGE_", "XDG_"))}
        self.env.update(HOME=str(self.home), XDG_RUNTIME_DIR=str(self.dir / "run"), PYTHONPATH=str(REPO))
        (self.dir / "run").mkdir(mode=0o700)

    def sshd(self, extra_config: Sequence[str] = ()) -> SSHServer:
        folder = self.dir / f"sshd{len(self.servers)}"
        folder.mkdir(mode=0o755)
        server = SSHServer(folder, free_port(), self.key, list(extra_config))
        server.user = BENCH_USER
        keygen(server.host_key)
        server.authorized_keys.write_text(self.key.with_suffix(".pub").read_text())
        os.chmod(server.authorized_keys, 0o644)
        server.start()
        with (self.home / ".ssh" / "known_hosts").open("a") as f:
            f.write(server.known_hosts_line())
        self.servers.append(server)
        return server

    def ssh_argv(self, server: SSHServer, *remote_command: str, options: Sequence[str] = ()) -> list[str]:
        """Plain OpenSSH to `server` with the bench key and known_hosts (BatchMode: never prompts)."""
        return ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={self.home}/.ssh/known_hosts", "-i", str(self.key),
                "-p", str(server.port), *options, f"{BENCH_USER}@127.0.0.1", *remote_command]

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def print_table(title: str, rows: Sequence[tuple[str, float, str, float]]) -> None:
    """Rows of (bridge case, ms, anchor case, ms) with the ratio bridge/anchor (< 1 means bridge is faster)."""
    print(f"\n## {title}\n")
    print(f"| {'bridge':44} | {'ms':>9} | {'anchor':44} | {'ms':>9} | {'ratio':>6} |")
    print(f"|{'-' * 46}|{'-' * 11}|{'-' * 46}|{'-' * 11}|{'-' * 8}|")
    for name, ms, anchor, anchor_ms in rows:
        ratio = ms / anchor_ms if anchor_ms else float("nan")
        print(f"| {name:44} | {ms:9.1f} | {anchor:44} | {anchor_ms:9.1f} | {ratio:6.2f} |")
    sys.stdout.flush()
