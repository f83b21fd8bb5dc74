"""A server "behind a firewall", for real: a network namespace joined to the host by a veth pair.

Inside: a loopback, the veth end, and iptables dropping every NEW inbound connection on the veth
(replies to connections made from inside still pass). Everything made here is named and removed
by that name; host-side iptables rules match only our own veth. Shared by tests and bench.
"""
from __future__ import annotations

import ipaddress
import os
import random
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.sshd import SSHD, SSHServer

_COUNTER = iter(range(10_000))


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = _ip("-4", "-o", "addr", "show").stdout
    return [ipaddress.ip_interface(line.split()[3]).network for line in out.splitlines()]


def _free_subnet() -> ipaddress.IPv4Network:
    """A link-local /30 nobody on this machine uses: traffic on it never leaves the machine."""
    used = _used_networks()
    for _ in range(200):
        net = ipaddress.ip_network(f"169.254.{random.randint(100, 199)}.{4 * random.randint(0, 63)}/30")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 16):
            return net
    raise RuntimeError("no free 169.254.x.x/30")


@dataclass
class Namespace:
    """One namespace + veth pair; `host_ip` is the host end, `ns_ip` the firewalled server's address."""

    name: str
    host_if: str
    ns_if: str
    host_ip: str
    ns_ip: str
    host_rules: list[list[str]] = field(default_factory=list)

    @classmethod
    def create(cls) -> "Namespace":
        tag = f"{os.getpid() % 100000}x{next(_COUNTER)}"
        net = _free_subnet()
        host_ip, ns_ip = (str(a) for a in list(net.hosts())[:2])
        ns = cls(f"brtun{tag}", f"bth{tag}", f"btn{tag}", host_ip, ns_ip)
        try:
            ns._build(net.prefixlen)
        except BaseException:
            ns.destroy()
            raise
        return ns

    def _build(self, prefix: int) -> None:
        _ip("netns", "add", self.name)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("link", "set", self.ns_if, "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/{prefix}", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        self.exec_check(["ip", "addr", "add", f"{self.ns_ip}/{prefix}", "dev", self.ns_if])
        self.exec_check(["ip", "link", "set", self.ns_if, "up"])
        self.exec_check(["ip", "link", "set", "lo", "up"])

    def argv(self, argv: list[str]) -> list[str]:
        """`argv` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def exec_check(self, argv: list[str]) -> None:
        subprocess.run(self.argv(argv), check=True, capture_output=True)

    def firewall(self) -> None:
        """Inside the namespace: loopback and replies pass, every NEW connection arriving on the veth is dropped."""
        self.exec_check(["iptables", "-A", "INPUT", "-i", "lo", "-j", "ACCEPT"])
        self.exec_check(["iptables", "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
                         "-j", "ACCEPT"])
        self.exec_check(["iptables", "-A", "INPUT", "-i", self.ns_if, "-j", "DROP"])

    def cut(self) -> None:
        """Drop every packet on the veth, both ways, on the host side: a silent death, no RST, no FIN."""
        for rule in (["INPUT", "-i", self.host_if, "-j", "DROP"], ["OUTPUT", "-o", self.host_if, "-j", "DROP"]):
            subprocess.run(["iptables", "-I", *rule], check=True)
            self.host_rules.append(rule)

    def flows_to(self, port: int) -> list[int]:
        """Local ports of the namespace's established TCP connections to `port` (on any address)."""
        out = subprocess.run(self.argv(["ss", "-Htn", "state", "established", f"( dport = :{port} )"]),
                             check=True, capture_output=True, text=True).stdout
        return [int(line.split()[-2].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip()]

    def strand(self, local_ports: list[int]) -> None:
        """End a `cut()` but keep the flows from `local_ports` black-holed, as after a NAT router lost its
        mappings: new connections pass, the old ones never see another packet (no RST, no FIN)."""
        self.heal()
        for port in local_ports:
            for rule in (["INPUT", "-i", self.host_if, "-p", "tcp", "--sport", str(port), "-j", "DROP"],
                         ["OUTPUT", "-o", self.host_if, "-p", "tcp", "--dport", str(port), "-j", "DROP"]):
                subprocess.run(["iptables", "-I", *rule], check=True)
                self.host_rules.append(rule)

    def heal(self) -> None:
        """Remove exactly the rules `cut()` added."""
        while self.host_rules:
            subprocess.run(["iptables", "-D", *self.host_rules.pop()], check=False, capture_output=True)

    def destroy(self) -> None:
        """Remove rules, veth and namespace (its own iptables go with it)."""
        self.heal()
        _ip("link", "del", self.host_if, check=False)
        _ip("netns", "del", self.name, check=False)


@dataclass
class NsSSHServer(SSHServer):
    """An sshd running inside `ns` on 127.0.0.1 and the namespace's veth address."""

    ns: Namespace | None = None

    def write_config(self) -> Path:
        self.extra_config = [*self.extra_config, f"ListenAddress {self.ns.ns_ip}"]  # type: ignore[union-attr]
        return super().write_config()

    def start(self) -> "NsSSHServer":
        Path("/run/sshd").mkdir(exist_ok=True)
        config = self.write_config()
        mark = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.ns.argv([SSHD, "-D", "-e", "-f", str(config)]),  # type: ignore
                                         stdout=log, stderr=log)
        _wait_log(self.log, mark, f"port {self.port}", 2)
        return self


def _wait_log(path: Path, offset: int, text: str, count: int, timeout: float = 10.0) -> None:
    """Wait until `text` appears `count` times after `offset` in a log (sshd prints one line per listener)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.read_bytes()[offset:].decode(errors="replace").count(text) >= count:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{path}: no {text!r} after {timeout}s")


def descendants(pid: int) -> list[int]:
    """Every process under `pid` (sshd forks a monitor per connection and a session under it), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def kill_with_sessions(server: SSHServer) -> None:
    """SIGKILL an sshd and every session it forked: the relay host crashes, its ports are freed."""
    if server.proc is None:
        return
    for pid in [server.proc.pid, *descendants(server.proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.proc.wait()
    server.proc = None


def usable(port: int, timeout: float = 1.0) -> bool:
    """True if a connection to the relay's forwarded port reaches the firewalled sshd (its banner comes back)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False
