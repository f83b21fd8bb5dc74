"""Reverse tunnel: bridge's tunnel beside OpenSSH's `ssh -R` run by autossh, in the same run.

The server sits in a network namespace whose firewall drops every NEW inbound connection; the
relay sshd runs on the host side of the veth. Measured: `ssh true` through each tunnel (and
direct to an identical sshd), throughput through each tunnel, and time until each tunnel is
usable again after three relay crashes in a row, after a silent 10 s cut, and after a cut that
strands the old flows against a relay with client-alive probes (quiet and busy stale port). Both tunnels use the
same heartbeat settings (bridge keepalive 2 s, two heartbeats; autossh -M 0 with
ServerAliveInterval=2, ServerAliveCountMax=2) and run side by side, so each outage hits both.
Remote commands run as the bench user, whose rc files are empty. Run: `python bench/run.py tunnel` (root).

Profiled limit: paramiko's send path (Channel.sendall -> Packetizer) tops out near 130 MB/s here
for 32 KiB packets (the largest OpenSSH accepts on a forwarded channel), so on an idle machine the
throughput ratio is below 1 while OpenSSH's C client is not CPU-bound.
"""
from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import time
from pathlib import Path

from common import BENCH_USER, BRIDGE, PYTHON, BenchEnv, command, interleaved_ms, print_table

from tests.sshd import free_port, keygen  # noqa: E402 - common puts the repo on sys.path
from tests.tunnel.netns import Namespace, NsSSHServer, kill_with_sessions, usable

KEEPALIVE = 2
PAYLOAD_MB = 200
SOURCE = ("import socket,sys\ns=socket.create_server(('127.0.0.1',int(sys.argv[1])))\nbuf=bytes(1<<20)\n"
          "while True:\n c,_=s.accept()\n for _ in range(int(sys.argv[2])): c.sendall(buf)\n c.close()\n")


def time_until_usable(ports: dict[str, int], limit: float = 120, every: float = 0.02) -> dict[str, float]:
    """Seconds from now until each named port is usable (polled every `every` s)."""
    start, done = time.monotonic(), {}
    while len(done) < len(ports) and time.monotonic() - start < limit:
        for name, port in ports.items():
            if name not in done and usable(port, timeout=0.3):
                done[name] = time.monotonic() - start
        time.sleep(every)
    return {name: done.get(name, float("inf")) for name in ports}


def read_all_mb_s(port: int) -> float:
    """MB/s reading PAYLOAD_MB from the source behind `port`."""
    start, got = time.monotonic(), 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        while data := sock.recv(1 << 20):
            got += len(data)
    assert got == PAYLOAD_MB << 20, f"short read through port {port}: {got}"
    return got / (1 << 20) / (time.monotonic() - start)


def throughput_mb_s(ports: dict[str, int], repeat: int = 5) -> dict[str, float]:
    """Median MB/s per tunnel, runs interleaved so a burst of load elsewhere hits both alike."""
    rates: dict[str, list[float]] = {name: [] for name in ports}
    for _ in range(repeat):
        for name, port in ports.items():
            rates[name].append(read_all_mb_s(port))
    return {name: statistics.median(values) for name, values in rates.items()}


class Scene:
    """Namespace, firewalled sshd and byte source inside it, relay on the host, both tunnels running."""

    def __init__(self, env: BenchEnv) -> None:
        self.env = env
        self.ns = Namespace.create()
        self.ns.firewall()
        self.relay = env.sshd(extra_config=[f"ListenAddress {self.ns.host_ip}"])
        self.server = self._server()
        self.source_port = free_port()
        self.procs: list[subprocess.Popen] = [subprocess.Popen(
            self.ns.argv([PYTHON, "-c", SOURCE, str(self.source_port), str(PAYLOAD_MB)]))]
        self.ports = {"bridge": (free_port(), free_port()), "autossh": (free_port(), free_port())}
        self._trust()
        self.ws = self._workspace()

    def _server(self) -> NsSSHServer:
        folder = self.env.dir / "nssshd"
        folder.mkdir(mode=0o755)
        server = NsSSHServer(folder, free_port(), self.env.key, [], ns=self.ns)
        server.user = BENCH_USER
        keygen(server.host_key)
        server.authorized_keys.write_text(self.env.key.with_suffix(".pub").read_text())
        os.chmod(server.authorized_keys, 0o644)
        return server.start()

    def _trust(self) -> None:
        relay_key = " ".join(self.relay.host_key.with_suffix(".pub").read_text().split()[:2])
        server_key = " ".join(self.server.host_key.with_suffix(".pub").read_text().split()[:2])
        with (self.env.home / ".ssh" / "known_hosts").open("a") as f:
            f.write(f"[{self.ns.host_ip}]:{self.relay.port} {relay_key}\n")
            for ssh_port, _ in self.ports.values():
                f.write(f"[localhost]:{ssh_port} {server_key}\n")

    def _workspace(self) -> Path:
        ws = self.env.dir / "tunnel-ws"
        ws.mkdir()
        ssh_port, bytes_port = self.ports["bridge"]
        (ws / "bridge.yaml").write_text(
            f"workspace: edge\nremotes:\n  relay: ssh://{BENCH_USER}@{self.ns.host_ip}:{self.relay.port}\n"
            f"  edge: {{url: \"ssh://{BENCH_USER}@localhost:{ssh_port}/tmp\", via: relay}}\n"
            f"  direct: ssh://{BENCH_USER}@127.0.0.1:{self.relay.port}/tmp\n"
            f"tunnel:\n  relay: relay\n  keepalive: {KEEPALIVE}\n  forwards: [\"{ssh_port}:127.0.0.1:"
            f"{self.server.port}\", \"{bytes_port}:127.0.0.1:{self.source_port}\"]\n")
        return ws

    def start_tunnels(self) -> None:
        log = (self.env.dir / "bridge-tunnel.log").open("ab")
        self.procs.append(subprocess.Popen(self.ns.argv([*BRIDGE, "tunnel", "up"]), cwd=self.ws, env=self.env.env,
                                           stdout=log, stderr=log))
        ssh_port, bytes_port = self.ports["autossh"]
        argv = ["autossh", "-M", "0", "-N", "-F", "/dev/null", "-i", str(self.env.key),
                "-o", f"UserKnownHostsFile={self.env.home}/.ssh/known_hosts", "-o", "BatchMode=yes",
                "-o", f"ServerAliveInterval={KEEPALIVE}", "-o", "ServerAliveCountMax=2",
                "-o", "ExitOnForwardFailure=yes", "-p", str(self.relay.port),
                "-R", f"{ssh_port}:127.0.0.1:{self.server.port}", "-R", f"{bytes_port}:127.0.0.1:{self.source_port}",
                f"{BENCH_USER}@{self.ns.host_ip}"]
        self.procs.append(subprocess.Popen(self.ns.argv(argv), env={**self.env.env, "AUTOSSH_LOGLEVEL": "0"},
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.autossh_started = time.monotonic()
        waited = time_until_usable({name: ports[0] for name, ports in self.ports.items()}, 30)
        assert all(w < 30 for w in waited.values()), f"tunnels did not come up: {waited}"

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.server.stop()
        self.ns.destroy()


def bench_latency(scene: Scene) -> list[tuple[str, float, str, float]]:
    """`ssh -J relay … true` through each tunnel; direct to the relay's identical sshd for scale."""
    config = scene.env.dir / "ssh_config"
    config.write_text(f"Host *\n  IdentityFile {scene.env.key}\n  UserKnownHostsFile {scene.env.home}/.ssh/known_hosts\n"
                      f"  BatchMode yes\n  StrictHostKeyChecking yes\n")
    jump = ["ssh", "-F", str(config), "-J", f"{BENCH_USER}@127.0.0.1:{scene.relay.port}"]
    via = {name: command([*jump, "-p", str(ports[0]), f"{BENCH_USER}@localhost", "true"])
           for name, ports in scene.ports.items()}
    direct = command(["ssh", "-F", str(config), "-p", str(scene.relay.port), f"{BENCH_USER}@127.0.0.1", "true"])
    ms = interleaved_ms({"direct": direct, **via})
    direct_ms, bridge_ms, autossh_ms = ms["direct"], ms["bridge"], ms["autossh"]
    rows = [("ssh -J … true through bridge's tunnel", bridge_ms, "same through ssh -R (autossh)", autossh_ms),
            ("ssh -J … true through bridge's tunnel", bridge_ms, "ssh true direct (same sshd config)", direct_ms)]
    exec_rows = _bridge_exec_rows(scene)
    return rows + exec_rows


def _bridge_exec_rows(scene: Scene) -> list[tuple[str, float, str, float]]:
    """`bridge exec -- true` through the tunnel vs direct, when the exec command is there."""
    probe = subprocess.run([*BRIDGE, "exec", "--on", "edge", "--", "true"], cwd=scene.ws, env=scene.env.env,
                           capture_output=True)
    if probe.returncode != 0:
        print(f"(bridge exec through the tunnel skipped: exit {probe.returncode}: {probe.stderr.decode()[-200:]})")
        return []
    ms = interleaved_ms({name: command([*BRIDGE, "exec", "--on", name, "--", "true"], env=scene.env.env,
                                       cwd=scene.ws) for name in ("edge", "direct")})
    through, direct = ms["edge"], ms["direct"]
    return [("bridge exec -- true through the tunnel", through, "bridge exec -- true direct", direct)]


def bench_throughput(scene: Scene) -> list[tuple[str, float, str, float]]:
    """Bulk bytes from inside the namespace out through each tunnel."""
    rates = throughput_mb_s({name: ports[1] for name, ports in scene.ports.items()})
    bridge_rate, ssh_rate = rates["bridge"], rates["autossh"]
    print(f"\nthroughput ({PAYLOAD_MB} MB): bridge {bridge_rate:.0f} MB/s, ssh -R {ssh_rate:.0f} MB/s, "
          f"ratio {bridge_rate / ssh_rate:.2f} (goal >= 0.8)")
    # as times, so the shared table's ratio reads like the others (< 1: bridge faster)
    return [(f"{PAYLOAD_MB} MB through bridge's tunnel", PAYLOAD_MB / bridge_rate * 1000,
             f"{PAYLOAD_MB} MB through ssh -R", PAYLOAD_MB / ssh_rate * 1000)]


def bench_relay_restarts(scene: Scene, outage: float = 1.0, count: int = 3) -> list[tuple[str, float, str, float]]:
    """Crash the relay (sshd and sessions) `count` times, 3 s apart: autossh's back-off does not reset in 3 s."""
    rows = []
    for n in range(1, count + 1):
        kill_with_sessions(scene.relay)
        time.sleep(outage)
        scene.relay.start()
        back = time_until_usable({name: ports[0] for name, ports in scene.ports.items()})
        rows.append((f"relay restart #{n} ({outage:g} s down): back after", back["bridge"] * 1000,
                     "autossh -M 0 (same heartbeat)", back["autossh"] * 1000))
        time.sleep(3)
    return rows


def bench_silent_cut(scene: Scene, seconds: float = 10.0) -> list[tuple[str, float, str, float]]:
    """Drop every packet on the veth for `seconds`; time from the heal until each tunnel carries again."""
    scene.ns.cut()
    time.sleep(seconds)
    scene.ns.heal()
    back = time_until_usable({name: ports[0] for name, ports in scene.ports.items()})
    return [(f"silent cut ({seconds:g} s): usable after the heal", back["bridge"] * 1000,
             "autossh -M 0 (same heartbeat)", back["autossh"] * 1000)]


def bench_stranded_cut(scene: Scene, seconds: float = 5.0) -> list[tuple[str, float, str, float]]:
    """A cut that strands the old flows (a NAT that lost its mappings: new connections pass, old ones are
    black-holed) against a relay with ClientAliveInterval 2 x ClientAliveCountMax 2 (README's 15 x 3, scaled
    down): the relay holds each tunnel's ports until it drops the dead session. OpenSSH 9.2 probes only an
    idle session, so it is timed twice: clients knocking on the stale port every 3.3 s, then every 0.3 s."""
    kill_with_sessions(scene.relay)  # the old sessions would keep the ports under the old settings
    scene.relay.extra_config = [*scene.relay.extra_config, "ClientAliveInterval 2", "ClientAliveCountMax 2"]
    scene.relay.start()
    rows = []
    for every, limit in ((3.0, 60.0), (0.02, 40.0)):  # the busy case last: it leaves the ports held
        time_until_usable({name: ports[0] for name, ports in scene.ports.items()})
        time.sleep(KEEPALIVE + 1)
        flows = scene.ns.flows_to(scene.relay.port)
        scene.ns.cut()
        time.sleep(seconds)
        scene.ns.strand(flows)
        back = time_until_usable({name: ports[0] for name, ports in scene.ports.items()}, limit, every)
        scene.ns.heal()
        rows.append((f"stranded cut, relay ClientAlive 2x2, a client every {every + 0.3:.1f} s: back after",
                     back["bridge"] * 1000, "autossh -M 0 (same heartbeat)", back["autossh"] * 1000))
    return rows


def main() -> None:
    env = BenchEnv()
    scene = None
    try:
        scene = Scene(env)
        scene.start_tunnels()
        print_table("one command through the tunnel (median of 10, interleaved)", bench_latency(scene))
        print_table("throughput (median of 5, interleaved)", bench_throughput(scene))
        time.sleep(max(0.0, 31 - (time.monotonic() - scene.autossh_started)))  # past autossh's 30 s start gate
        print_table("recovery after relay crashes in a row (kill -9 sshd + sessions)", bench_relay_restarts(scene))
        time.sleep(5)
        print_table("recovery after a silent cut (every packet dropped on the veth)", bench_silent_cut(scene))
        print_table("recovery after a cut that strands the old flows (relay with client-alive probes)",
                    bench_stranded_cut(scene))
    finally:
        if scene is not None:
            scene.close()
        env.close()


if __name__ == "__main__":
    main()
