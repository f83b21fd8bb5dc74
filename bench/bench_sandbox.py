"""Sandbox start-up: bridge's sandbox cold and pooled beside docker run, docker exec and the SDK's exec_run.

Pooled cases wait (untimed) for the background refill before each run, as a user's next
command would find the pool refilled. The whole-process cases run the real
`bridge exec --sandbox -- true` on a local:// workspace.
"""
from __future__ import annotations

import os
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
from bridge.exec.sandbox.pool import idle

IMAGE = "bridge-sandbox:bookworm"


def workspace(pool: int) -> Path:
    """A local:// workspace whose sandbox keeps `pool` ready containers (0755: uid 65534 mounts it)."""
    folder = Path(tempfile.mkdtemp(prefix="bridge-bench-sandbox-"))
    os.chmod(folder, 0o755)
    (folder / "bridge.yaml").write_text(f"workspace: bench\nremotes:\n  local: local://{folder}/target\n"
                                        f"exec:\n  sandbox: {{pool: {pool}}}\n")
    return folder


def whole_process_ms(engine: Engine, pool: int) -> float:
    """`bridge exec --sandbox -- true`, as a user types it; pooled runs find the pool refilled."""
    folder = workspace(pool)
    run = command([*BRIDGE, "exec", "--sandbox", "--", "true"], cwd=folder)
    if not pool:
        return median_ms(run)
    spec = spec_from_config(cfg.load(folder).exec.sandbox, str(folder))
    fill(engine, spec)
    ms = prepared_ms(pool_ready(engine, spec), run)
    drain(engine, spec)
    return ms


def prepared_ms(prepare: Callable[[], object], run: Callable[[], object], repeat: int = 10) -> float:
    """Median of `run()` with an untimed `prepare()` before each."""
    times = []
    for _ in range(repeat + 1):
        prepare()
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times[1:])


def pool_ready(engine: Engine, spec: SandboxSpec) -> Callable[[], None]:
    def wait() -> None:
        while len(idle(engine, spec)) < spec.pool:
            time.sleep(0.02)
        time.sleep(0.05)  # let the refiller process exit, so it does not share the CPUs with the timed run
    return wait


def sdk_exec_run() -> float:
    import docker  # anchor only; bridge does not use the SDK

    client = docker.from_env()
    box = client.containers.run(IMAGE, ["sleep", "600"], detach=True, remove=True, labels={"bench": "1"})
    try:
        return median_ms(lambda: box.exec_run(["true"]))
    finally:
        box.kill()


def docker_exec() -> float:
    cid = subprocess.run(["docker", "run", "-d", "--rm", IMAGE, "sleep", "600"], capture_output=True,
                         text=True, check=True).stdout.strip()
    try:
        return median_ms(command(["docker", "exec", cid, "true"]))
    finally:
        subprocess.run(["docker", "kill", cid], capture_output=True)


def main() -> None:
    subprocess.run([str(REPO / "scripts/start-dockerd.sh")], check=True, capture_output=True)
    subprocess.run([str(REPO / "scripts/build-sandbox-image.sh")], check=True)
    engine = Engine()
    cold, pooled = SandboxSpec(), SandboxSpec(pool=1)
    docker_run = median_ms(command(["docker", "run", "--rm", IMAGE, "true"]))
    exec_ms, sdk_ms = docker_exec(), sdk_exec_run()
    cold_ms = median_ms(lambda: run_in_sandbox(cold, ["true"], engine=engine))
    fill(engine, pooled)
    ready = pool_ready(engine, pooled)
    pooled_ms = prepared_ms(ready, lambda: run_in_sandbox(pooled, ["true"], engine=engine))
    compile_bridge()
    whole_cold, whole_pooled = whole_process_ms(engine, 0), whole_process_ms(engine, 1)
    interp = median_ms(command([PYTHON, "-c", "pass"]))
    drain(engine)
    print_table("sandbox start, `true` (medians of 10)", [
        ("cold, in-process", cold_ms, "docker run --rm IMAGE true", docker_run),
        ("pooled, in-process", pooled_ms, "docker exec (running container)", exec_ms),
        ("pooled, in-process", pooled_ms, "SDK exec_run (running container)", sdk_ms),
        ("bridge exec --sandbox, cold", whole_cold, "docker run --rm IMAGE true", docker_run),
        ("bridge exec --sandbox, pooled (goal <= 1.5x)", whole_pooled, "docker exec (running container)", exec_ms),
        ("bridge exec --sandbox, pooled (goal <= 0.33x)", whole_pooled, "docker run --rm IMAGE true", docker_run),
        ("python -c pass (interpreter alone)", interp, "docker exec (running container)", exec_ms),
    ])


if __name__ == "__main__":
    sys.exit(main())
