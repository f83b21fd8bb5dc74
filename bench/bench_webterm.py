"""Keystroke-to-echo latency: the hub's web terminal in chromium vs `bridge shell` via hub:// vs `ssh -tt`.

All three reach the same sshd (the bench user, empty rc files, /bin/sh) on the same agent's path:
the browser through the hub's /ws/term (the hub's own SSH session through the agent's stream),
`bridge shell` through the hub's client stream and the agent, `ssh -tt` straight to the sshd. The
page's figure is measured inside the page (keydown to xterm.js having parsed the echo); the two
CLIs' from writing a byte to their PTY to reading its echo back. 200 keystrokes each, p50 and p99.
Run: `python bench/run.py webterm` (root; needs /usr/bin/chromium and playwright).
"""
from __future__ import annotations

import json
import os
import pty
import select
import statistics
import subprocess
import time

from pathlib import Path
from typing import Sequence

from common import BRIDGE, BenchEnv, print_table

from tests.sshd import free_port, wait_port  # noqa: E402 - common puts the repo on sys.path

KEYS = int(os.environ.get('BENCH_KEYS', 200))
WAIT_MS = 60000


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class PtyClient:
    """A command on a PTY of our own: type a byte, time until its echo comes back."""

    def __init__(self, argv: list[str], env: dict, cwd: Path | None = None) -> None:
        self.master, slave = pty.openpty()

        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                                     start_new_session=True)
        os.close(slave)
        self.seen = b""

    def read_until(self, needle: bytes, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.seen:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {needle!r} from {self.proc.args[:3]}: {self.seen[-300:]!r}")
            if select.select([self.master], [], [], 0.5)[0]:
                self.seen += os.read(self.master, 65536)

    def ready(self) -> None:
        self.read_until(b"$ ")  # the remote prompt: typed earlier, the line could reach a local tty still cooked
        os.write(self.master, b"echo RE''ADY\n")
        self.read_until(b"READY\r\n")

    def echo_ms(self, keys: int) -> list[float]:
        times = []
        for i in range(keys):
            self.seen = b""
            start = time.perf_counter()
            os.write(self.master, b"a")
            self.read_until(b"a")
            times.append((time.perf_counter() - start) * 1000)
            if i % 50 == 49:
                os.write(self.master, b"\x15")  # Ctrl-U: keep the line short
                time.sleep(0.05)
        return times

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def browser_echo_ms(url: str, state: Path, token: str, keys: int) -> list[float]:
    """In-page latency: keydown to xterm.js having parsed the echoed byte."""
    from playwright.sync_api import sync_playwright

    from tests.hub.web_scene import launch, open_shell, sign_in, wait_screen

    with sync_playwright() as playwright:
        browser = launch(playwright, state)
        try:
            page = browser.new_page()
            sign_in(page, url, token)
            open_shell(page)
            page.keyboard.type("echo RE''ADY")
            page.keyboard.press("Enter")
            wait_screen(page, "READY", WAIT_MS)
            page.wait_for_timeout(300)
            # keydown -> xterm.js has parsed the echo (xterm parses a write right after user input at once,
            # inside the socket's message event); the send time splits the page's part from the round trip
            page.evaluate("""() => { window.__lat = []; window.__send = []; let t0 = 0, sent = 0;
                const ws = window.bridgeView.ws, send = ws.send.bind(ws);
                ws.send = (data) => { if (t0 && !sent && typeof data !== 'string') sent = performance.now(); send(data); };
                document.addEventListener('keydown', () => { t0 = performance.now(); sent = 0; }, true);
                window.bridgeTerm.onWriteParsed(() => {
                    if (t0 && sent) { window.__lat.push(performance.now() - t0); window.__send.push(sent - t0); t0 = 0; } });
            }""")
            for i in range(keys):
                page.keyboard.press("a")
                page.wait_for_function(f"() => window.__lat.length > {i}", timeout=WAIT_MS)
                if i % 50 == 49:
                    page.evaluate("() => window.bridgeTerm.input('\\x15')")  # Ctrl-U, not timed (no keydown)
                    page.wait_for_timeout(50)
            to_send = page.evaluate("() => window.__send")
            print(f"web terminal, keydown to the key's WebSocket send: p50 {statistics.median(to_send):.2f} ms "
                  f"p99 {percentile(to_send, 99):.2f} ms")
            return page.evaluate("() => window.__lat")
        finally:
            browser.close()


class Scene:
    """An sshd for the bench user, a hub, an agent whose sshd that is, and a workspace with a hub:// remote."""

    def __init__(self) -> None:
        self.env = BenchEnv()
        self.server = self.env.sshd()
        self.state = self.env.dir / "hub"
        self.port = free_port()
        self.procs: list[subprocess.Popen] = []
        self.log = (self.env.dir / "hub.log").open("ab")

    def start(self) -> None:
        env = self.env.env
        self._spawn([*BRIDGE, "hub", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                     "--state", str(self.state)])
        wait_port(self.port, 30)
        time.sleep(1)
        public = _hub_public_key(self.env.dir / "hub.log")
        with self.server.authorized_keys.open("a") as f:
            f.write(public + "\n")  # the hub's own key, plain (no guard): the same sshd work as the others
        agent_token = self._cli("token", "agent", "web1")
        self._spawn([*BRIDGE, "agent", "up", "--state", str(self.env.dir / "agent"), "--hub",
                     f"wss://127.0.0.1:{self.port}", "--token", agent_token, "--ssh",
                     f"127.0.0.1:{self.server.port}", "--ssh-user", self.server.user])
        self.token = self._cli("token", "user", "ann", "--role", "admin", "--ttl", "1h")
        deadline = time.monotonic() + 60
        while not self._online():
            if time.monotonic() > deadline:
                raise RuntimeError("the agent did not connect")
            time.sleep(0.2)
        self.workspace = self.env.dir / "ws"
        self.workspace.mkdir()
        (self.workspace / "bridge.yaml").write_text(
            f"workspace: app\ndefault: edge\nremotes:\n  edge: {{url: \"hub://{self.server.user}@127.0.0.1:{self.port}/web1/tmp\", "
            f"identity: {json.dumps(str(self.env.key))}}}\n")
        subprocess.run(["git", "init", "-q"], cwd=self.workspace, check=True)
        for argv in (["hub", "login", f"127.0.0.1:{self.port}", "--token", self.token], ["test", "--trust", "edge"]):
            subprocess.run([*BRIDGE, *argv], cwd=self.workspace, env=env, check=True, capture_output=True)

    def _spawn(self, argv: list[str]) -> None:
        self.procs.append(subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=self.env.env))

    def _cli(self, *args: str) -> str:
        return subprocess.run([*BRIDGE, "hub", *args, "--state", str(self.state)], env=self.env.env, check=True,
                              capture_output=True, text=True).stdout.strip()

    def _online(self) -> bool:
        import ssl
        import urllib.request

        context = ssl.create_default_context(cafile=str(self.state / "tls.crt"))
        context.check_hostname = False
        request = urllib.request.Request(f"https://127.0.0.1:{self.port}/api/v1/agents",
                                         headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, context=context, timeout=5) as response:
                return any(a["online"] for a in json.loads(response.read())["agents"])
        except OSError:
            return False

    def close(self) -> None:
        for proc in reversed(self.procs):  # only what we started, by its PID
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.env.close()


def _hub_public_key(log: Path) -> str:
    for line in log.read_text().splitlines():
        if "API runs log in to servers with:" in line:
            return line.split("with: ", 1)[1].strip()
    raise RuntimeError("the hub printed no SSH key")


def pty_echo(argv: list[str], env: dict, cwd: Path | None = None) -> list[float]:
    client = PtyClient(argv, env, cwd)
    try:
        client.ready()
        return client.echo_ms(KEYS)
    finally:
        client.close()


def main() -> int:
    scene = Scene()
    try:
        scene.start()
        env = {**scene.env.env, "TERM": "xterm-256color"}
        ssh = pty_echo(scene.env.ssh_argv(scene.server, options=["-tt"]), env)
        shell = pty_echo([*BRIDGE, "shell", "edge"], env, scene.workspace)
        web = browser_echo_ms(f"https://127.0.0.1:{scene.port}/", scene.state, scene.token, KEYS)
    finally:
        scene.close()
    for name, values in (("web terminal", web), ("bridge shell hub://", shell), ("ssh -tt", ssh)):
        print(f"{name}: n={len(values)} p50 {statistics.median(values):.2f} ms p99 {percentile(values, 99):.2f} ms")
    rows = []
    for p in (50, 99):
        rows.append((f"web terminal (chromium) p{p}", percentile(web, p), f"ssh -tt p{p}", percentile(ssh, p)))
        rows.append((f"bridge shell via hub:// p{p}", percentile(shell, p), f"ssh -tt p{p}", percentile(ssh, p)))
    print_table(f"keystroke to echo, {KEYS} keys (goal: web p99 <= 2x ssh)", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
