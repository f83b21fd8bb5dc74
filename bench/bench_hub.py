"""The hub: exec, bulk bytes and PTY echo through hub and agent beside direct ssh and `ssh -J`, in one run;
then one hub holding 1,000 agents (memory, idle CPU, the storm after a restart).

Everything is real: `bridge hub serve` (uvicorn, TLS 1.3), `bridge agent up` in front of a loopback sshd
that logs in the bench user (empty rc files), a second sshd as the `ssh -J` relay. The 1,000 agents are
the agent's own reconnect loop (bridge.agent.service) run 1,000 times in one separate process, each with
its own key and enrolment, pinging every 20 s like a real one. Run: `python bench/run.py hub` (root).

Goals (issue 16): warm exec via the hub <= 2x direct warm exec; throughput >= 0.8x ssh; <= 50 KiB hub
memory per idle agent; all 1,000 back within 60 s of a hub restart.
"""
from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

from common import BENCH_USER, BRIDGE, PYTHON, BenchEnv, command, interleaved_ms, print_table

from tests.sshd import free_port, wait_port  # noqa: E402 - common puts the repo on sys.path

AGENTS = 1000
BIG = 200 * 1000 * 1000
BIG_CMD = ["head", "-c", str(BIG), "/dev/zero"]
SWARM_PING = 20.0  # a real agent's default
SOFT_FD_LIMIT = 1024  # Debian's default soft RLIMIT_NOFILE: the hub must raise it itself to hold 1,000 agents


# -- processes ----------------------------------------------------------------------------------

def _low_fd_limit() -> None:
    """In the child: the soft fd limit a default systemd/login session gives (the hard one stays)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(SOFT_FD_LIMIT, hard), hard))


class HubProc:
    """`bridge hub serve` on loopback with its state dir; restartable on the same port and certificate."""

    def __init__(self, env: BenchEnv, ping: float = 20.0) -> None:
        self.env, self.ping = env, ping
        self.state, self.port = env.dir / "hubstate", free_port()
        self.log = env.dir / "hub.log"
        self.proc: subprocess.Popen | None = None
        self.fingerprint = ""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "HubProc":
        out = self.log.open("ab")
        self.proc = subprocess.Popen([*BRIDGE, "hub", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                                      "--state", str(self.state), "--ping", f"{self.ping:g}"],
                                     env=self.env.env, stdout=out, stderr=out, preexec_fn=_low_fd_limit)
        wait_port(self.port, 30)
        self.fingerprint = _wait(lambda: next((line.split()[-1] for line in self.log.read_text().splitlines()
                                               if "certificate fingerprint" in line), ""), 10)
        return self

    def stop(self) -> float:
        """SIGTERM and wait; returns the seconds the hub took to exit."""
        start = time.monotonic()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        return time.monotonic() - start

    def cli(self, *args: str) -> str:
        proc = subprocess.run([*BRIDGE, "hub", *args, "--state", str(self.state)], env=self.env.env,
                              capture_output=True, text=True, check=True)
        return proc.stdout.strip()

    def rss_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cpu_s(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def soft_fd_limit(self) -> str:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return line.split()[3]
        return "?"


def _wait(check: Callable[[], object], timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"bench: not ready after {timeout}s: {check}")


class Scene:
    """The hub, one agent in front of sshd `server`, a relay sshd, and a workspace with `edge` (hub) and `direct`."""

    def __init__(self, env: BenchEnv) -> None:
        self.env = env
        self.server = env.sshd()
        self.relay = env.sshd()
        self.hub = HubProc(env).start()
        self.agent_state = env.dir / "agent"
        out = (env.dir / "agent.log").open("ab")
        self.agent = subprocess.Popen([*BRIDGE, "agent", "up", "--hub", f"wss://{self.hub.address}",
                                       "--token", self.hub.cli("token", "agent", "bench1"),
                                       "--ssh", f"127.0.0.1:{self.server.port}", "--ssh-user", BENCH_USER,
                                       "--state", str(self.agent_state)], env=env.env, stdout=out, stderr=out)
        _wait(lambda: json.loads((self.agent_state / "status.json").read_text() or "{}").get("state") == "connected"
              if (self.agent_state / "status.json").exists() else False, 30)
        token = self.hub.cli("token", "user", "bencher", "--role", "admin", "--ttl", "8h")
        subprocess.run([*BRIDGE, "hub", "login", self.hub.address, "--token", token], env=env.env, check=True,
                       stdout=subprocess.DEVNULL)
        self.ws = env.dir / "ws"
        self.ws.mkdir()
        (self.ws / "bridge.yaml").write_text(
            f"workspace: bench\ndefault: edge\nremotes:\n"
            f"  edge: {{url: \"hub://{BENCH_USER}@{self.hub.address}/bench1/tmp\"}}\n"
            f"  direct: {{url: \"ssh://{BENCH_USER}@127.0.0.1:{self.server.port}/tmp\"}}\n")
        subprocess.run([*BRIDGE, "test", "--trust", "edge"], cwd=self.ws, env=env.env, check=True,
                       stdout=subprocess.DEVNULL)

    def bridge(self, *args: str) -> Callable[[], None]:
        return command([*BRIDGE, *args], env={**self.env.env, "BRIDGE_KEEPER_IDLE": "600"}, cwd=self.ws)

    def ssh(self, *remote: str, jump: bool = False, options: tuple[str, ...] = ()) -> list[str]:
        hop = ("-J", f"{BENCH_USER}@127.0.0.1:{self.relay.port}") if jump else ()
        return self.env.ssh_argv(self.server, *remote, options=[*hop, *options])

    def close(self) -> None:
        if self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            self.agent.wait(10)
        self.hub.stop()


# -- exec, throughput, echo -----------------------------------------------------------------------

def bench_exec(scene: Scene) -> list[tuple[str, float, str, float]]:
    """`true` cold (no keeper, whole handshake) and warm (keeper / ControlMaster), through hub, direct and -J."""
    ssh_config = scene.env.dir / "ssh_config"  # -J's hop needs the key and known_hosts too
    ssh_config.write_text(f"Host *\n  IdentityFile {scene.env.key}\n  UserKnownHostsFile {scene.env.home}/.ssh/known_hosts\n"
                          f"  BatchMode yes\n")
    cfg = ("-F", str(ssh_config))
    cm = {jump: ("-o", f"ControlPath={scene.env.dir}/cm-{'jump' if jump else 'direct'}.sock") for jump in (False, True)}
    for jump, path in cm.items():
        subprocess.run(scene.ssh(jump=jump, options=(*cfg, *path, "-o", "ControlMaster=yes", "-o", "ControlPersist=600",
                                                     "-fN")), check=True)
    cold = interleaved_ms({
        "hub": scene.bridge("exec", "--no-reuse", "--on", "edge", "--", "true"),
        "direct": scene.bridge("exec", "--no-reuse", "--on", "direct", "--", "true"),
        "ssh": command(scene.ssh("true", options=cfg)),
        "ssh -J": command(scene.ssh("true", jump=True, options=cfg))})
    warm = interleaved_ms({
        "hub": scene.bridge("exec", "--on", "edge", "--", "true"),
        "direct": scene.bridge("exec", "--on", "direct", "--", "true"),
        "ssh": command(scene.ssh("true", options=(*cfg, *cm[False]))),
        "ssh -J": command(scene.ssh("true", jump=True, options=(*cfg, *cm[True])))})
    return [("exec true via hub, warm keeper", warm["hub"], "bridge exec direct, warm keeper (goal <= 2x)",
             warm["direct"]),
            ("exec true via hub, warm keeper", warm["hub"], "ssh -J relay, ControlMaster", warm["ssh -J"]),
            ("exec true via hub, warm keeper", warm["hub"], "ssh direct, ControlMaster", warm["ssh"]),
            ("exec true via hub, no keeper (cold)", cold["hub"], "bridge exec direct, no keeper (cold)", cold["direct"]),
            ("exec true via hub, no keeper (cold)", cold["hub"], "ssh -J relay, cold", cold["ssh -J"]),
            ("exec true via hub, no keeper (cold)", cold["hub"], "ssh direct, cold", cold["ssh"])]


def bench_throughput(scene: Scene) -> list[tuple[str, float, str, float]]:
    """200 MB of remote stdout through the hub vs direct vs OpenSSH (as times: ratio < 1 means bridge is faster)."""
    ms = interleaved_ms({"hub": scene.bridge("exec", "--on", "edge", "--", *BIG_CMD),
                         "direct": scene.bridge("exec", "--on", "direct", "--", *BIG_CMD),
                         "ssh": command(scene.ssh(*BIG_CMD))}, repeat=3)
    rate = {name: BIG / value / 1000 for name, value in ms.items()}
    print(f"\nthroughput: hub {rate['hub']:.0f} MB/s, direct {rate['direct']:.0f} MB/s, ssh {rate['ssh']:.0f} MB/s; "
          f"hub/ssh {rate['hub'] / rate['ssh']:.2f} (goal >= 0.8)")
    return [(f"200 MB via hub, warm keeper ({rate['hub']:.0f} MB/s)", ms["hub"],
             f"ssh, default cipher ({rate['ssh']:.0f} MB/s)", ms["ssh"]),
            (f"200 MB via hub, warm keeper ({rate['hub']:.0f} MB/s)", ms["hub"],
             f"bridge exec direct, warm ({rate['direct']:.0f} MB/s)", ms["direct"])]


def _pty(scene: Scene, through_hub: bool):  # -> paramiko.Channel
    """A PTY shell as the bench user on `server`, through the hub (the SSH layer's hub socket) or over TCP.

    The host key is compared with the server's own before authenticating.
    """
    import socket

    import paramiko

    from bridge.ssh.hubsock import hub_socket
    from bridge.ssh.settings import HubRoute

    if through_hub:
        os.environ["HOME"] = str(scene.env.home)  # this process reads the bench home's hub login, as the CLI would
        host, port = scene.hub.address.split(":")
        sock = hub_socket(HubRoute(host, int(port), "bench1", "bench"), 10)
    else:
        sock = socket.create_connection(("127.0.0.1", scene.server.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock)
    transport.start_client(timeout=10)
    expected = scene.server.host_key.with_suffix(".pub").read_text().split()[1]
    if transport.get_remote_server_key().get_base64() != expected:
        raise RuntimeError("bench: the server's host key is not the one it was made with")
    transport.auth_publickey(BENCH_USER, paramiko.Ed25519Key.from_private_key_file(str(scene.env.key)))
    channel = transport.open_session()
    channel.get_pty()
    channel.invoke_shell()
    channel.settimeout(10)
    time.sleep(0.3)
    while channel.recv_ready():
        channel.recv(65536)  # the prompt
    return channel


def echo_ms(channel, samples: int = 60) -> list[float]:
    """Round trips of one typed key to its echo by the remote tty."""
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        channel.send(b"x")
        while b"x" not in channel.recv(1024):
            pass
        times.append((time.perf_counter() - start) * 1000)
        time.sleep(0.01)
    channel.send(b"\x15")  # erase the typed line
    return times


def _p95(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.95) - 1]


def bench_echo(scene: Scene) -> list[tuple[str, float, str, float]]:
    """Echo latency idle, then while another session on the same path streams 200 MB (again and again)."""
    rows = []
    for through_hub, remote in ((True, "edge"), (False, "direct")):
        channel = _pty(scene, through_hub)
        idle = echo_ms(channel)
        stop = threading.Event()
        bytes_run = scene.bridge("exec", "--on", remote, "--", *BIG_CMD)
        streamer = threading.Thread(target=lambda: [bytes_run() for _ in iter(stop.is_set, True)], daemon=True)
        streamer.start()
        time.sleep(0.5)  # the stream is flowing
        loaded = echo_ms(channel)
        stop.set()
        streamer.join()
        channel.get_transport().close()
        where = "via hub" if through_hub else "direct"
        rows += [(f"PTY echo {where}, 200 MB streaming (median)", statistics.median(loaded),
                  f"PTY echo {where}, idle (median)", statistics.median(idle)),
                 (f"PTY echo {where}, 200 MB streaming (p95)", _p95(loaded), f"PTY echo {where}, idle (p95)", _p95(idle))]
    return rows


# -- 1,000 agents ---------------------------------------------------------------------------------

def bench_swarm(env: BenchEnv) -> None:
    """A fresh hub; 1,000 agents connect; idle memory and CPU; a restart and the storm that follows."""
    hub = HubProc(env, ping=SWARM_PING)
    hub.state = env.dir / "swarmstate"
    hub.log = env.dir / "swarm-hub.log"
    hub.start()
    swarm = None
    try:
        keys = _enrolled_keys(hub, AGENTS)
        time.sleep(2)
        rss0, limit = hub.rss_kib(), hub.soft_fd_limit()
        swarm = Swarm(env, hub, keys)
        first = swarm.until_connected(AGENTS, 180)
        time.sleep(SWARM_PING + 5)  # every agent has pinged and heartbeated at least once: truly idle
        rss1, cpu0 = hub.rss_kib(), hub.cpu_s()
        time.sleep(3 * SWARM_PING)
        idle_cpu = (hub.cpu_s() - cpu0) / (3 * SWARM_PING) * 100
        down_at = time.monotonic()
        exit_s = hub.stop()
        hub.start()
        up_at = time.monotonic()
        back = swarm.until_connected(AGENTS, 180, since=down_at)
        after = swarm.latest
        rss2 = hub.rss_kib()
    finally:
        if swarm is not None:
            swarm.stop()
        hub.stop()
    per_agent = (rss1 - rss0) / AGENTS
    print(f"\n## one hub, {AGENTS} agents (ping {SWARM_PING:g} s; hub started with soft fd limit {SOFT_FD_LIMIT}, "
          f"raised itself to {limit})\n")
    print("| measure | value | goal |\n|---|---:|---|")
    print(f"| all {AGENTS} connected from a cold start | {first:.1f} s | |")
    print(f"| hub RSS before agents / with {AGENTS} idle | {rss0 / 1024:.1f} / {rss1 / 1024:.1f} MiB | |")
    print(f"| hub memory per idle agent | {per_agent:.1f} KiB | <= 50 KiB |")
    print(f"| hub CPU at idle ({AGENTS} agents, {3 * SWARM_PING:g} s window) | {idle_cpu:.2f} % of a core | |")
    print(f"| hub exit on SIGTERM with {AGENTS} agents | {exit_s:.1f} s | |")
    print(f"| all {AGENTS} back after a restart (from the SIGTERM) | {back:.1f} s | <= 60 s |")
    print(f"| ... of which the hub was down (SIGTERM to listening) | {up_at - down_at:.1f} s | |")
    print(f"| hub RSS after the storm | {rss2 / 1024:.1f} MiB | |")
    print(f"| failed attempts not explained by the hub being down (timeouts, 5xx) | "
          f"{overload_signs(after.get('reasons', {}))} | 0 |")
    for reason, count in sorted(after.get("reasons", {}).items(), key=lambda item: -item[1]):
        print(f"| failed attempts: {reason.replace('|', '/')} | {count} | |")
    sys.stdout.flush()


def _enrolled_keys(hub: HubProc, count: int) -> dict[str, str]:
    """`count` agents enrolled straight into the hub's store (name -> private key PEM): enrolment is a
    once-per-agent event; what a restart storms the hub with is agents authenticating with their own keys."""
    from bridge import hublink
    from bridge.hub.store import Store

    store = Store(hub.state / "hub.db")
    keys = {f"sim{n:04d}": hublink.new_agent_key() for n in range(count)}
    for name, key in keys.items():
        store.enrol(name, hublink.public_key_pem(key))
    return {name: key.decode() for name, key in keys.items()}


class Swarm:
    """The `--swarm` child process and the latest counts it reported (a JSON line every 0.2 s)."""

    def __init__(self, env: BenchEnv, hub: HubProc, keys: dict[str, str]) -> None:
        spec = env.dir / "swarm.json"
        spec.write_text(json.dumps({"hub": f"wss://{hub.address}", "fingerprint": hub.fingerprint,
                                    "keys": keys, "folder": str(env.dir / "swarm"), "ping": SWARM_PING}))
        self.proc = subprocess.Popen([PYTHON, __file__, "--swarm", str(spec)], env=env.env, stdout=subprocess.PIPE,
                                     text=True)
        self.latest: dict = {}
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.latest = json.loads(line)

    def until_connected(self, count: int, timeout: float, since: float | None = None) -> float:
        start = since if since is not None else time.monotonic()
        time.sleep(1)  # the old counts are stale right after a restart
        while self.latest.get("connected", 0) < count:
            if time.monotonic() - start > timeout or self.proc.poll() is not None:
                raise RuntimeError(f"bench: only {self.latest.get('connected')} of {count} agents connected")
            time.sleep(0.05)
        return time.monotonic() - start

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def swarm_main(spec_path: str) -> None:
    """The child: run the agent's own reconnect loop once per key, all in one event loop, until SIGTERM."""
    spec = json.loads(Path(spec_path).read_text())
    asyncio.run(_swarm(spec))


async def _swarm(spec: dict) -> None:
    from bridge import hublink
    from bridge.agent.link import Plan
    from bridge.agent.service import _reconnect_forever
    from bridge.agent.state import AgentStatus, Enrolment

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    hub = hublink.parse_hub(spec["hub"])
    dead_sshd = free_port()  # each hello probes the local sshd's host key: a closed port answers at once
    reasons: dict[str, int] = {}
    statuses, tasks = [], []
    for name, key in spec["keys"].items():
        plan = Plan(Enrolment(name, hub, spec["fingerprint"], True), key.encode(), Path(spec["folder"]) / name,
                    ssh_port=dead_sshd, ping_interval=spec["ping"])
        status = AgentStatus(pid=os.getpid(), agent=name, hub=hub.display())
        statuses.append(status)
        tasks.append(asyncio.create_task(_reconnect_forever(plan, status, lambda: None, partial(_count, reasons), stop)))
    await _report(statuses, reasons, stop)
    await asyncio.gather(*tasks, return_exceptions=True)


def _count(reasons: dict[str, int], message: str) -> None:
    """Count a failed attempt by its cause (the agent's log line without its delay); ignore connects."""
    if "; retrying in" in message:
        kind = message.split("; retrying in")[0][:80]
        reasons[kind] = reasons.get(kind, 0) + 1


async def _report(statuses: list, reasons: dict[str, int], stop: asyncio.Event) -> None:
    """Print how many agents are connected and why attempts failed, every 0.2 s, until `stop`."""
    while not stop.is_set():
        connected = sum(s.state == "connected" for s in statuses)
        print(json.dumps({"connected": connected, "reasons": reasons}), flush=True)
        try:
            await asyncio.wait_for(stop.wait(), 0.2)
        except asyncio.TimeoutError:
            pass


def overload_signs(reasons: dict[str, int]) -> int:
    """Failed attempts other than a refused port (hub down) or the hub's own close (its shutdown)."""
    benign = ("refused", "Connect call failed", "the hub closed the connection", "1012")
    return sum(count for reason, count in reasons.items() if not any(word in reason for word in benign))


def main() -> None:
    env = BenchEnv()
    scene = None
    try:
        scene = Scene(env)
        print_table("one command through the hub (median of 10, interleaved)", bench_exec(scene))
        print_table("200 MB of stdout (median of 3, interleaved)", bench_throughput(scene))
        print_table("PTY echo while another session streams 200 MB (60 keys each)", bench_echo(scene))
        scene.close()
        scene = None
        bench_swarm(env)
    finally:
        if scene is not None:
            scene.close()
        env.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--swarm"]:
        swarm_main(sys.argv[2])
    else:
        main()
