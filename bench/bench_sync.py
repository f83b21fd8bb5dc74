"""bridge push against plain `git push` over ssh and `rsync -a` over ssh: one run, same sshd, ratios.

A 3,000-file / 30 MB repo (random bytes: incompressible), then one-file changes. The sshd is a
real OpenSSH on loopback; the remote user is `bridgebench` (/bin/sh, no rc files run), because
root's ~/.bashrc here runs `pyenv init` (~80 ms) on every remote command. bridge is timed as a
whole cold process (`bridge push`, the installed launcher: interpreter, imports, connect, push, deploy).

    python bench/bench_sync.py [--files 3000] [--size 10240] [--rounds 7]
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.sshd import SSHServer, free_port, keygen  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from common import BENCH_USER as USER  # noqa: E402
from common import BRIDGE  # noqa: E402
from common import compile_bridge  # noqa: E402
from common import ensure_bench_user as ensure_user  # noqa: E402


def run(argv: list, cwd: Path | None = None, env: dict | None = None) -> float:
    """Run to completion; seconds taken. Raises with the tail of stderr on failure."""
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:4]} exited {proc.returncode}: {proc.stderr.decode()[-600:]}")
    return took


def make_repo(path: Path, files: int, size: int) -> None:
    path.mkdir()
    run(["git", "init", "-q", "-b", "main"], cwd=path)
    for n in range(files):
        target = path / f"dir{n % 100:02d}" / f"file{n:04d}.bin"
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(os.urandom(size))
    run(["git", "add", "-A"], cwd=path)
    run(["git", "commit", "-q", "-m", "initial"], cwd=path)


def make_wheel(folder: Path) -> None:
    """A tiny valid wheel so a requirements change installs something real without any index."""
    files = {"tinypkg/__init__.py": "VERSION = '1.0'\n",
             "tinypkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
             "tinypkg-1.0.dist-info/WHEEL":
                 "Wheel-Version: 1.0\nGenerator: b\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(t.encode()).digest()).rstrip(b'=').decode()},"
              f"{len(t)}" for n, t in files.items()] + ["tinypkg-1.0.dist-info/RECORD,,"]
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / "tinypkg-1.0-py3-none-any.whl", "w") as whl:
        for name, text in files.items():
            whl.writestr(name, text)
        whl.writestr("tinypkg-1.0.dist-info/RECORD", "\n".join(record) + "\n")


class Bench:
    """Client home, sshd, the three destinations, and how to reach each."""

    def __init__(self, args: argparse.Namespace) -> None:
        compile_bridge()
        user = ensure_user()
        self.dir = Path(tempfile.mkdtemp(prefix="bridge-bench-sync-"))
        os.chmod(self.dir, 0o755)
        self.home = self.dir / "home"
        self.key = keygen(self.home / ".ssh" / "id_ed25519")
        self.server = SSHServer(self.dir / "sshd", free_port(), self.key)
        self.server.dir.mkdir()
        self.server.user = USER
        keygen(self.server.host_key)
        self.server.authorized_keys.write_text(self.key.with_suffix(".pub").read_text())
        self.server.start()
        (self.home / ".ssh" / "known_hosts").write_text(self.server.known_hosts_line())
        self.remote = self.dir / "remote"
        self.remote.mkdir()
        os.chown(self.remote, user.pw_uid, user.pw_gid)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("SSH_", "BRIDGE_", "XDG_", "GIT_"))}
        self.env.update(HOME=str(self.home), PYTHONPATH=str(REPO), XDG_RUNTIME_DIR=str(self.dir / "run"),
                        GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@x", GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@x")
        (self.dir / "run").mkdir(mode=0o700)
        self.ssh = ["ssh", "-i", str(self.key), "-p", str(self.server.port), "-o", "BatchMode=yes",
                    "-o", f"UserKnownHostsFile={self.home / '.ssh' / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes"]
        self.ws = self.dir / "ws"
        self.hook_times: list[float] = []
        make_repo(self.ws, args.files, args.size)

    def as_user(self, *argv: str) -> None:
        subprocess.run(["runuser", "-u", USER, "--", *argv], check=True, cwd="/")

    def plain_git_push(self) -> float:
        env = {**self.env, "GIT_SSH_COMMAND": " ".join(self.ssh)}
        return run(["git", "push", "-q", f"ssh://{USER}@127.0.0.1/{self.remote}/plain.git", "HEAD:main"],
                   cwd=self.ws, env=env)

    def rsync(self) -> float:
        return run(["rsync", "-a", "--exclude", ".git", "-e", " ".join(self.ssh), f"{self.ws}/",
                    f"{USER}@127.0.0.1:{self.remote}/rsync/"], env=self.env)

    def bridge(self, *args: str) -> float:
        return run([*BRIDGE, *args], cwd=self.ws, env=self.env)

    def setup_targets(self) -> None:
        self.as_user("git", "init", "-q", "--bare", str(self.remote / "plain.git"))
        (self.ws / "bridge.yaml").write_text(
            f"workspace: bench\ndefault: prod\nremotes:\n  prod: {{url: \"ssh://{USER}@127.0.0.1:{self.server.port}"
            f"{self.remote}/bridge\"}}\n")
        run(["git", "add", "bridge.yaml"], cwd=self.ws)
        run(["git", "commit", "-q", "-m", "bridge.yaml"], cwd=self.ws)
        self.bridge("init")

    def in_process_push(self, n: int) -> float:
        """bridge's own work without interpreter start-up and imports: a keeper-warm process would see this."""
        from bridge import config as cfg
        from bridge.sync import service

        self.change_one_file(n)
        os.environ.update(self.env)
        os.chdir(self.ws)
        start = time.perf_counter()
        config = cfg.load(required=True)
        results = service.push(config, service.plan_push(config, None), lambda event: None)
        took = time.perf_counter() - start
        if not results[0].ok:
            raise RuntimeError(f"in-process push failed: {results[0].error}")
        self.hook_times.append(results[0].report.done["duration"])
        return took

    def change_one_file(self, n: int) -> None:
        (self.ws / "dir00" / "file0000.bin").write_bytes(os.urandom(10240))
        run(["git", "commit", "-q", "-am", f"change {n}"], cwd=self.ws)

    def close(self) -> None:
        self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def measure(bench: Bench, rounds: int) -> list[tuple[str, str, float, float]]:
    bench.setup_targets()
    rows = [("initial push, 3,000 files / 30 MB", "git push", bench.bridge("push"), bench.plain_git_push())]
    rows.append(("initial push, 3,000 files / 30 MB", "rsync -a", rows[0][2], bench.rsync()))
    times: dict[str, list[float]] = {"bridge": [], "git": [], "rsync": []}
    for n in range(rounds):
        bench.change_one_file(n)
        times["bridge"].append(bench.bridge("push"))
        times["git"].append(bench.plain_git_push())
        times["rsync"].append(bench.rsync())
    inc, git_inc = statistics.median(times["bridge"]), statistics.median(times["git"])
    rows.append(("one file changed, push + deploy (median)", "git push", inc, git_inc))
    rows.append(("one file changed, push + deploy (median)", "rsync -a", inc, statistics.median(times["rsync"])))
    warm = [bench.in_process_push(rounds + n) for n in range(rounds)]
    rows.append(("same, in-process (no interpreter start or imports)", "git push", statistics.median(warm), git_inc))
    rows.append(("  of which the server's deploy (hook-reported)", "git push", statistics.median(bench.hook_times),
                 git_inc))
    make_wheel(bench.ws / "wheels")
    (bench.ws / "requirements.txt").write_text("--no-index\n./wheels/tinypkg-1.0-py3-none-any.whl\n")
    run(["git", "add", "-A"], cwd=bench.ws)
    run(["git", "commit", "-q", "-m", "deps"], cwd=bench.ws)
    rows.append(("requirements changed: venv + pip install", "bridge one-file push", bench.bridge("push"), inc))
    bench.change_one_file(rounds)
    rows.append(("one file changed, venv reused", "bridge one-file push", bench.bridge("push"), inc))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--size", type=int, default=10240)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    bench = Bench(args)
    try:
        rows = measure(bench, args.rounds)
    finally:
        bench.close()
    print(f"remote user {USER} (/bin/sh, no rc files); bridge = whole cold `bridge push` process (bin/bridge)\n")
    print(f"| work | anchor | bridge | anchor time | ratio |\n|---|---|---|---|---|")
    for work, anchor, mine, theirs in rows:
        print(f"| {work} | {anchor} | {mine * 1000:.0f} ms | {theirs * 1000:.0f} ms | {mine / theirs:.2f}x |")


if __name__ == "__main__":
    main()
