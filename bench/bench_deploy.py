"""Time a push that deploys (bridge's hook) against a plain `git push`, same run, same disk.

Timings only: builds a 3,000-file / 30 MB repo, pushes it to a bare repo with no hook and to a
root prepared by bridge, then times one-file incremental pushes. Local file transport, so the
figures show the hook's cost over git's own work (no SSH handshake).

    PYTHONPATH=. python bench/bench_deploy.py [--files 3000] [--size 10240] [--rounds 5]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bridge.sync.prepare import DeploySettings, prepare_root, run_local


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_workspace(path: Path, files: int, size: int) -> None:
    """Random content (incompressible, like code plus assets at its worst) in 100 dirs."""
    git(path.parent, "init", "-q", "-b", "main", path.name)
    for n in range(files):
        target = path / ("dir%02d" % (n % 100)) / ("file%04d.txt" % n)
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(os.urandom(size // 2).hex().encode())
    git(path, "add", "-A")
    git(path, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "initial")


# The hook runs `python3` from PATH: this bench's own interpreter, not a pyenv shim (~0.1-0.2 s a call)
HOOK_ENV = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}


def timed_push(ws: Path, remote: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["git", "push", "-q", str(remote), "HEAD:main"], cwd=ws, check=True, env=HOOK_ENV,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def change_one_file(ws: Path, n: int) -> None:
    (ws / "dir00" / "file0000.txt").write_text("round %d\n" % n)
    git(ws, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qam", "round %d" % n)


def run(files: int, size: int, rounds: int) -> dict:
    # the hook's background `rm -rf` of pruned releases may still run when the bench ends
    with tempfile.TemporaryDirectory(prefix="bridge-bench-", ignore_cleanup_errors=True) as tmp:
        base = Path(tmp)
        ws = base / "ws"
        make_workspace(ws, files, size)
        plain = base / "plain.git"
        git(base, "init", "-q", "--bare", str(plain))
        prepare_root(run_local, str(base / "srv"), DeploySettings())
        bridge = base / "srv" / "repo.git"
        times = {"initial": (timed_push(ws, plain), timed_push(ws, bridge)), "incremental": ([], [])}
        for n in range(rounds):
            change_one_file(ws, n)
            times["incremental"][0].append(timed_push(ws, plain))
            times["incremental"][1].append(timed_push(ws, bridge))
        inc = times["incremental"]
        times["incremental"] = (statistics.median(inc[0]), statistics.median(inc[1]))
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--size", type=int, default=10240, help="bytes per file")
    parser.add_argument("--rounds", type=int, default=5, help="incremental pushes (median reported)")
    args = parser.parse_args()
    times = run(args.files, args.size, args.rounds)
    print("%d files, %.0f MB; incremental = median of %d one-file pushes"
          % (args.files, args.files * args.size / 1e6, args.rounds))
    print("hook runs under %s" % shutil.which("python3", path=HOOK_ENV["PATH"]))
    print("%-12s %14s %20s %7s %15s" % ("push", "plain git (s)", "git + deploy (s)", "ratio", "deploy adds (s)"))
    for name, (plain, bridge) in times.items():
        print("%-12s %14.3f %20.3f %6.2fx %15.3f" % (name, plain, bridge, bridge / plain, bridge - plain))


if __name__ == "__main__":
    main()
