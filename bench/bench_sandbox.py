"""Sandbox start-up: bridge's sandbox cold and pooled beside docker run, docker exec and the SDK's exec_run.

The whole-process cases run the installed `bridge exec --sandbox -- true` on a local://
workspace, as a user types it, and are served by the connection keeper. The bench gives bridge
its own runtime dir, so the keeper is one started from this checkout (never another user's or
worktree's), warmed by an untimed first run as a user's is after their first command, and
stopped by its PID at the end. Before each timed run an untimed step waits until the previous
run's container is gone and (pooled) the pool is refilled, as a user's next command would find
it; after each pooled run the bench checks that the container that was idle before is no
longer idle, i.e. the run really took a fresh pooled container. Whole-process cases and their
docker anchors are interleaved round by round, so machine noise hits them alike.
"""
from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from common import BRIDGE, PYTHON, REPO, command, compile_bridge, median_ms, print_table

from bridge import config as cfg
from bridge.exec.sandbox import Engine, SandboxSpec, drain, fill, run_in_sandbox, spec_from_config
from bridge.exec.sandbox.box import list_boxes, name_of
from bridge.exec.sandbox.pool import idle
from bridge.exec.sandbox.snapshot import tracked_snapshot

IMAGE = "bridge-sandbox:bookworm"
ROUNDS = 12


class Workspace:
    """A local:// git workspace whose sandbox keeps `pool` ready containers; nothing deployed, so each
    run mounts the snapshot of its tracked files (computed on every run, as a user's runs do)."""

    def __init__(self, engine: Engine, pool: int, runtime: Path) -> None:
        self.engine, self.folder = engine, Path(tempfile.mkdtemp(prefix="bridge-bench-sandbox-"))
        (self.folder / "bridge.yaml").write_text(f"workspace: bench\nremotes:\n  local: local://{self.folder}/target\n"
                                                 f"exec:\n  sandbox: {{pool: {pool}}}\n")
        (self.folder / "app.py").write_text("print('bench')\n")
        for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=bench", "-c", "user.email=bench@invalid",
                                                     "commit", "-qm", "bench"]):
            subprocess.run(["git", "-C", str(self.folder), *args], check=True, capture_output=True)
        self.mounted = str(tracked_snapshot(self.folder))
        self.spec = spec_from_config(cfg.load(self.folder).exec.sandbox, self.mounted)
        self.run = command([*BRIDGE, "exec", "--sandbox", "--", "true"], cwd=self.folder,
                           env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
        self.misses = 0

    def prepare(self) -> set[str]:
        """Untimed: the last run's container removed, the pool refilled; the idle containers' ids."""
        wait_for(lambda: not self.running())
        if self.spec.pool:
            wait_for(lambda: len(idle(self.engine, self.spec)) >= self.spec.pool)
        time.sleep(0.05)  # let the refill's last engine calls settle
        return {e["Id"] for e in idle(self.engine, self.spec)}

    def running(self) -> list[str]:
        """Run containers of this workspace (it is mounted in them) that still exist."""
        return [name_of(e) for e in list_boxes(self.engine) if name_of(e).startswith("bridge-run-")
                and any(m.get("Source") == self.mounted for m in e.get("Mounts", []))]

    def timed(self) -> float:
        """One whole-process run in ms; a pooled run that left its idle container unclaimed is counted."""
        ready = self.prepare()
        start = time.perf_counter()
        self.run()
        ms = (time.perf_counter() - start) * 1000
        if self.spec.pool and ready <= {e["Id"] for e in idle(self.engine, self.spec)}:
            self.misses += 1
        return ms


def wait_for(check: Callable[[], object], within: float = 60.0) -> None:
    end = time.monotonic() + within
    while not check():
        if time.monotonic() > end:
            raise RuntimeError("bench: the sandbox never settled (pool not refilled or a container left)")
        time.sleep(0.02)


def stop_keeper(runtime: Path) -> None:
    """Stop the bench's own keeper by the PID in its lock file (it removes what it still holds first)."""
    for lock in (runtime / "bridge").glob("keeper-*.lock"):  # named by the bench env's identity
        try:
            pid = int(lock.read_text())
        except (OSError, ValueError):
            continue
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), 30)


def whole_process(engine: Engine) -> dict[str, float]:
    """Rounds of: docker run --rm, docker exec, bridge pooled, bridge cold; medians in ms."""
    runtime = Path(tempfile.mkdtemp(prefix="bridge-bench-run-"))
    pooled, cold = Workspace(engine, 1, runtime), Workspace(engine, 0, runtime)
    cid = subprocess.run(["docker", "run", "-d", "--rm", IMAGE, "sleep", "600"], capture_output=True,
                         text=True, check=True).stdout.strip()
    cases: dict[str, Callable[[], float]] = {
        "docker run": timer(command(["docker", "run", "--rm", IMAGE, "true"])),
        "docker exec": timer(command(["docker", "exec", cid, "true"])),
        "pooled": pooled.timed,
        "cold": cold.timed,
    }
    try:
        for case in (pooled, cold):  # a user's first run: starts the keeper, fills the pool (untimed)
            case.run()
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(ROUNDS):
            for name, run in cases.items():
                times[name].append(run())
        if pooled.misses:
            raise RuntimeError(f"bench: {pooled.misses} pooled runs did not take a pooled container")
        if not any((runtime / "bridge").glob("keeper-*.sock")):
            raise RuntimeError("bench: no keeper served the runs")
    finally:
        subprocess.run(["docker", "kill", cid], capture_output=True)
        stop_keeper(runtime)
        drain(engine, pooled.spec)
    return {name: statistics.median(values) for name, values in times.items()}


def timer(run: Callable[[], object]) -> Callable[[], float]:
    def timed() -> float:
        start = time.perf_counter()
        run()
        return (time.perf_counter() - start) * 1000
    return timed


def sdk_exec_run() -> float:
    import docker  # the anchor: the SDK's high-level exec_run (bridge uses its low-level client)

    client = docker.from_env()
    box = client.containers.run(IMAGE, ["sleep", "600"], detach=True, remove=True, labels={"bench": "1"})
    try:
        return median_ms(lambda: box.exec_run(["true"]))
    finally:
        box.kill()


def in_process(engine: Engine) -> tuple[float, float]:
    """run_in_sandbox in this process (the work alone, no interpreter start): cold and pooled."""
    cold, pooled = SandboxSpec(), SandboxSpec(pool=1)
    cold_ms = median_ms(lambda: run_in_sandbox(cold, ["true"], engine=engine))
    fill(engine, pooled)
    times = []
    for _ in range(ROUNDS):
        wait_for(lambda: idle(engine, pooled))
        time.sleep(0.2)  # the detached refiller (the no-keeper path) exits
        start = time.perf_counter()
        run_in_sandbox(pooled, ["true"], engine=engine)
        times.append((time.perf_counter() - start) * 1000)
    wait_for(lambda: idle(engine, pooled))
    drain(engine, pooled)
    return cold_ms, statistics.median(times)


def main() -> None:
    subprocess.run([str(REPO / "scripts/start-dockerd.sh")], check=True, capture_output=True)
    subprocess.run([str(REPO / "scripts/build-sandbox-image.sh")], check=True)
    compile_bridge()
    engine = Engine()
    sdk_ms = sdk_exec_run()
    cold_ms, pooled_ms = in_process(engine)
    whole = whole_process(engine)
    interp = median_ms(command([PYTHON, "-S", "-c", "pass"]))  # -S: how the launcher starts Python
    run_ms, exec_ms = whole["docker run"], whole["docker exec"]
    print_table(f"sandbox start, `true` (medians of {ROUNDS}; whole-process rows interleaved round by round)", [
        ("bridge exec --sandbox pooled (goal <= 1.5x)", whole["pooled"], "docker exec (running container)", exec_ms),
        ("bridge exec --sandbox pooled (goal <= 0.33x)", whole["pooled"], "docker run --rm IMAGE true", run_ms),
        ("bridge exec --sandbox cold", whole["cold"], "docker run --rm IMAGE true", run_ms),
        ("pooled, in-process (no keeper)", pooled_ms, "SDK exec_run (running container)", sdk_ms),
        ("cold, in-process (no keeper)", cold_ms, "docker run --rm IMAGE true", run_ms),
        ("python -S -c pass (launcher's interpreter)", interp, "docker exec (running container)", exec_ms),
    ])


if __name__ == "__main__":
    sys.exit(main())
