"""`bridge exec` against its anchors, in one run: one command cold and warm, fan-out, 200 MB of stdout.

Servers are real sshd instances on loopback that log in the bench user (/bin/sh, empty home),
so no rc file taxes the remote commands. Anchors: OpenSSH (cold, and through a ControlMaster),
xargs -P + ssh, and Fabric, parallel-ssh and Ansible from a separate venv (`--venv`, default
/tmp/bench-venv: `pip install fabric parallel-ssh ansible-core`); a tool that is missing is named.

    /root/.pyenv/versions/3.11.7/bin/python3 bench/bench_exec.py [--quick] [--one]

--one: only the one-command table (cold and warm starts), for iterating on start-up time.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from common import BRIDGE, PYTHON, BenchEnv, command, median_ms, print_table

VENV = Path(os.environ.get("BENCH_VENV", "/tmp/bench-venv"))
QUICK = "--quick" in sys.argv
ONE = "--one" in sys.argv
REPEAT = 5 if QUICK else 15
FAN = "hostname; uptime"
BIG = 200 * 1000 * 1000
BIG_CMD = f"head -c {BIG} /dev/zero"


def workspace(bench: BenchEnv, servers: list) -> Path:
    """bridge.yaml with one remote per server and groups of the first 20 and all of them."""
    folder = bench.dir / "ws"
    folder.mkdir(exist_ok=True)
    remotes = "".join(f"  h{i:02d}: {{url: \"ssh://bridgebench@127.0.0.1:{s.port}\"}}\n" for i, s in enumerate(servers))
    names = [f"h{i:02d}" for i in range(len(servers))]
    (folder / "bridge.yaml").write_text(f"workspace: bench\ndefault: h00\nremotes:\n{remotes}groups:\n"
                                        f"  g20: [{', '.join(names[:20])}]\n  g50: [{', '.join(names)}]\n")
    return folder


def bridge_cmd(bench: BenchEnv, ws: Path, *args: str):
    return command([*BRIDGE, *args], env={**bench.env, "BRIDGE_KEEPER_IDLE": "600"}, cwd=ws)


def stop_keeper(bench: BenchEnv) -> None:
    """Stop the keeper by the PID in its lock file and wait until it is gone (cold-start runs)."""
    for lock in (bench.dir / "run" / "bridge").glob("keeper-*.lock"):  # named by the bench env's identity
        try:
            pid = int(lock.read_text())
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            continue
        for _ in range(200):
            try:
                os.kill(pid, 0)
                time.sleep(0.01)
            except ProcessLookupError:
                break


def cold_keeper_ms(bench: BenchEnv, ws: Path) -> float:
    """A first `bridge exec` with no keeper running: it starts one, which connects, then runs."""
    run = bridge_cmd(bench, ws, "exec", "h00", "--", "true")
    return prepared_ms(lambda: stop_keeper(bench), run, max(3, REPEAT // 3))


def one_command(bench: BenchEnv, ws: Path, server) -> None:
    control = bench.dir / "cm.sock"
    cm = ["-o", f"ControlPath={control}"]
    subprocess.run(bench.ssh_argv(server, options=[*cm, "-o", "ControlMaster=yes", "-o", "ControlPersist=600", "-fN"]),
                   check=True)
    interp = median_ms(command([PYTHON, "-S", "-c", "pass"]), REPEAT)  # as bin/bridge starts it
    ssh_cold = median_ms(command(bench.ssh_argv(server, "true")), REPEAT)
    ssh_cold_gcm = median_ms(command(bench.ssh_argv(server, "true", options=["-c", "aes128-gcm@openssh.com",
                                                                          "-o", "KexAlgorithms=curve25519-sha256"])), REPEAT)
    ssh_cm = median_ms(command(bench.ssh_argv(server, "true", options=cm)), REPEAT)
    warm = median_ms(bridge_cmd(bench, ws, "exec", "h00", "--", "true"), REPEAT, warmup=2)
    direct = median_ms(bridge_cmd(bench, ws, "exec", "--no-reuse", "h00", "--", "true"), REPEAT)
    first = cold_keeper_ms(bench, ws)
    subprocess.run(bench.ssh_argv(server, options=[*cm, "-O", "exit"]), capture_output=True)
    print_table("one command `true` (whole processes, medians)", [
        ("python -S -c pass (the launcher's interpreter)", interp, "ssh cold", ssh_cold),
        ("bridge exec, warm keeper", warm, "ssh ControlMaster (goal <= 3x)", ssh_cm),
        ("bridge exec, warm keeper", warm, "ssh cold (goal <= 0.15x)", ssh_cold),
        ("bridge exec, warm keeper, minus python -S", warm - interp, "ssh ControlMaster", ssh_cm),
        ("bridge exec, no keeper running (starts one)", first, "ssh cold (goal <= 1x)", ssh_cold),
        ("bridge exec --no-reuse (in-process connect)", direct, "ssh cold (goal <= 1x)", ssh_cold),
        ("bridge exec --no-reuse", direct, "ssh cold, aes128-gcm + curve25519", ssh_cold_gcm),
    ])


def fan_out(bench: BenchEnv, ws: Path, servers: list, count: int) -> None:
    group = f"g{count}"
    hosts = servers[:count]
    repeat = max(3, REPEAT // 3)
    run = bridge_cmd(bench, ws, "exec", "--on", group, "--", FAN)
    warm = median_ms(run, repeat)
    cold = prepared_ms(lambda: stop_keeper(bench), run, repeat)
    direct = median_ms(bridge_cmd(bench, ws, "exec", "--no-reuse", "--on", group, "--", FAN), repeat)
    ports = "\n".join(str(s.port) for s in hosts) + "\n"
    ssh = " ".join(bench.ssh_argv(hosts[0], repr(FAN))).replace(f"-p {hosts[0].port}", "-p {}")
    rows = [("bridge, no keeper running (starts one)", cold, "xargs -P + ssh",
             median_ms(command(["sh", "-c", f"xargs -P {count} -I{{}} {ssh}"], input=ports.encode()), repeat))]
    for name, anchor in anchors(bench, hosts, count).items():
        times = _try_ms(anchor, 1 if name.startswith("Ansible") else repeat)
        rows += [("bridge, no keeper running (starts one)", cold, name, times),
                 ("bridge --no-reuse (in-process)", direct, name, times),
                 ("bridge, warm keeper", warm, name, times)]
    print_table(f"fan-out `{FAN}` on {count} hosts (whole processes; Ansible: one run)", rows)


def prepared_ms(prepare, run, repeat: int) -> float:
    """Median of `run()` with an untimed `prepare()` before each."""
    times = []
    for _ in range(repeat):
        prepare()
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return sorted(times)[len(times) // 2]


def _try_ms(run, repeat: int) -> float:
    try:
        return median_ms(run, repeat)
    except Exception as e:  # an anchor that cannot run here is named, not fatal
        print(f"  (anchor failed: {str(e)[:300]})")
        return float("nan")


def anchors(bench: BenchEnv, hosts: list, count: int) -> dict:
    """Fabric, parallel-ssh and Ansible scripts, run with the venv's python (missing tools are skipped)."""
    python = VENV / "bin" / "python"
    found = {}
    if not python.exists():
        print(f"  (no {VENV}: Fabric, parallel-ssh and Ansible not measured)")
        return found
    ports = [s.port for s in hosts]
    key = str(bench.key)
    fabric = (f"from fabric import ThreadingGroup as G\nimport paramiko\n"
              f"g = G(*[f'bridgebench@127.0.0.1:{{p}}' for p in {ports}], connect_kwargs={{'key_filename': {key!r}, "
              f"'look_for_keys': False, 'allow_agent': False}})\ng.run({FAN!r}, hide=True)\n")
    pssh = (f"from pssh.clients import ParallelSSHClient\nfrom pssh.config import HostConfig\n"
            f"c = ParallelSSHClient(['127.0.0.1'] * {count}, host_config=[HostConfig(port=p, user='bridgebench', "
            f"private_key={key!r}) for p in {ports}], pool_size={count})\n"
            f"out = c.run_command({FAN!r})\nc.join(out)\n[list(o.stdout) for o in out]\n"
            f"assert all(o.exit_code == 0 for o in out), [o.exit_code for o in out]\n")
    found["Fabric ThreadingGroup"] = command([str(python), "-c", fabric])
    found["parallel-ssh (no host key checks)"] = command([str(python), "-c", pssh])
    found.update(_ansible(bench, hosts, count))
    return found


def _ansible(bench: BenchEnv, hosts: list, count: int) -> dict:
    tool = VENV / "bin" / "ansible"
    if not tool.exists():
        print("  (ansible not installed in the bench venv)")
        return {}
    inventory = bench.dir / f"inventory{count}.ini"
    inventory.write_text("".join(f"h{i} ansible_host=127.0.0.1 ansible_port={s.port}\n" for i, s in enumerate(hosts)))
    env = {**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_SSH_ARGS": "-o ControlMaster=no",
           "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3", "ANSIBLE_LOCAL_TEMP": str(bench.dir / "ansible-tmp"),
           "ANSIBLE_REMOTE_TEMP": "/tmp/.ansible-bench"}
    base = [str(tool), "all", "-i", str(inventory), "-u", "bridgebench", "--private-key", str(bench.key),
            "-f", str(count)]
    return {"Ansible -m shell (no ControlMaster)": command([*base, "-m", "shell", "-a", FAN], env=env),
            "Ansible -m raw (no ControlMaster)": command([*base, "-m", "raw", "-a", FAN], env=env)}


def throughput(bench: BenchEnv, ws: Path, server) -> None:
    """200 MB of stdout into /dev/null; MB/s shown as ms for the whole run (lower is better)."""
    repeat = max(3, REPEAT // 5)
    ssh = median_ms(command(bench.ssh_argv(server, BIG_CMD)), repeat)
    ssh_gcm = median_ms(command(bench.ssh_argv(server, BIG_CMD, options=["-c", "aes128-gcm@openssh.com"])), repeat)
    warm = median_ms(bridge_cmd(bench, ws, "exec", "h00", "--", BIG_CMD), repeat)
    direct = median_ms(bridge_cmd(bench, ws, "exec", "--no-reuse", "h00", "--", BIG_CMD), repeat)
    print_table("200 MB of stdout to /dev/null (whole processes; ratio < 1: bridge faster)", [
        (f"bridge exec, warm keeper ({BIG / warm / 1000:.0f} MB/s)", warm, f"ssh default cipher ({BIG / ssh / 1000:.0f} MB/s)", ssh),
        (f"bridge exec, warm keeper", warm, f"ssh aes128-gcm ({BIG / ssh_gcm / 1000:.0f} MB/s)", ssh_gcm),
        (f"bridge exec --no-reuse ({BIG / direct / 1000:.0f} MB/s)", direct, "ssh default cipher", ssh),
    ])


def main() -> None:
    bench = BenchEnv()
    try:
        servers = [bench.sshd() for _ in range(1 if ONE else 20 if QUICK else 50)]
        ws = workspace(bench, servers)
        print("bench sshd: user bridgebench, /bin/sh, empty home (no rc files run)")
        one_command(bench, ws, servers[0])
        if ONE:
            return
        throughput(bench, ws, servers[0])
        for count in (20,) if QUICK else (20, 50):
            fan_out(bench, ws, servers, count)
    finally:
        stop_keeper(bench)
        bench.close()


if __name__ == "__main__":
    main()
