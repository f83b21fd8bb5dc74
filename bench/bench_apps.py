"""Apps under systemd: push -> new release serving, and the restart gap, bridge beside the same by hand.

The server is a systemd+sshd container (tests/systemd_server.py). "By hand" is what a user does
without bridge: `git push` into a bare repo whose post-receive checks the tree out, then
`ssh root@host systemctl restart hand`, the app a plain unit of the same app.py. piku (its own
piku.py from a copy of github.com/piku/piku, uWSGI emperor from Debian) deploys the same app. Both sides are
timed until an HTTP GET answers the new version, in the same run; the ratio is what counts. The gap
rows poll every ~2 ms during a restart and during a push: bridge's web sits behind its nginx front
(the server has nginx), so its gap is expected to be 0 beside the in-place `systemctl restart`.
"""
from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable

from common import BRIDGE, REPO

from tests.sshd import keygen
from tests.systemd_server import build_image, start_server

APP = (REPO / "tests" / "apps" / "app.py").read_text()
ROUNDS = 5
HAND_HOOK = "#!/bin/sh\nGIT_WORK_TREE=/srv/hand git checkout -f -q main\n"
HAND_UNIT = """[Unit]
StartLimitIntervalSec=0

[Service]
WorkingDirectory=/srv/hand
Environment=PORT=8001
ExecStart=/usr/bin/python3 app.py
Restart=on-failure
"""


def answers(url: str, body: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.read().decode() == body
    except OSError:
        return False


def answers_any(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def wait_for(url: str, body: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not answers(url, body):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} never answered {body!r}")
        time.sleep(0.01)


def git(cwd: Path, *args: str, env: dict | None = None) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=env)


def setup_home(tmp: Path, server: object) -> dict:
    """An isolated HOME whose key the server accepts and whose known_hosts trusts the server."""
    home = tmp / "home"
    key = keygen(home / ".ssh" / "id_ed25519")
    server.authorize(key.with_suffix(".pub").read_text())  # type: ignore[attr-defined]
    (home / ".ssh" / "known_hosts").write_text(server.known_hosts_line())  # type: ignore[attr-defined]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSH_", "BRIDGE_", "XDG_"))}
    env.update(HOME=str(home), XDG_RUNTIME_DIR=str(tmp / "run"), GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@x",
               GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@x",
               GIT_SSH_COMMAND=shlex.join(ssh_options(home)))
    (tmp / "run").mkdir(mode=0o700)
    return env


def ssh_options(home: Path) -> list:
    """ssh as the bench's HOME (ssh itself reads the passwd home's files, not $HOME)."""
    return ["ssh", "-i", str(home / ".ssh" / "id_ed25519"), "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={home / '.ssh' / 'known_hosts'}"]


def setup_hand(server: object) -> None:
    server.sh('git init -q --bare /srv/hand.git && mkdir -p /srv/hand && printf %s "$1" > /srv/hand.git/hooks/post-receive'
              ' && chmod +x /srv/hand.git/hooks/post-receive && printf %s "$2" > /etc/systemd/system/hand.service'
              ' && systemctl daemon-reload', HAND_HOOK, HAND_UNIT)  # type: ignore[attr-defined]


PIKU_REPO = Path("/work/.mirror/piku+piku/repo")  # piku is not on PyPI (`piku` there is another tool)
PIKU_SETUP = ("DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install"
              " -y -qq --no-install-recommends uwsgi uwsgi-plugin-python3 python3-click >/dev/null"
              " && adduser --disabled-password --gecos '' --ingroup www-data piku >/dev/null"
              " && install -o piku -g www-data -m 755 /tmp/piku.py /home/piku/piku.py"
              " && su - piku -c 'python3 ~/piku.py setup' >/dev/null && cp /usr/bin/uwsgi /usr/local/bin/uwsgi-piku"
              " && printf '%s\\n' \"$1\" > /tmp/key.pub && su - piku -c 'python3 ~/piku.py setup:ssh /tmp/key.pub' >/dev/null"
              " && systemctl daemon-reload && systemctl enable --now uwsgi-piku")


def setup_piku(server: object, public_key: str) -> str | None:
    """piku as its INSTALL.md says (uWSGI emperor from Debian, the piku account); None, or why it cannot."""
    if not (PIKU_REPO / "HEAD").is_file() and not (PIKU_REPO / ".git").exists():
        return f"piku not installable here: no copy of github.com/piku/piku at {PIKU_REPO} (GitHub is not reachable)"
    for name, dest in (("piku.py", "/tmp/piku.py"), ("uwsgi-piku.service", "/etc/systemd/system/uwsgi-piku.service")):
        text = subprocess.run(["git", "--git-dir", str(PIKU_REPO), "show", f"HEAD:{name}"], capture_output=True,
                              check=True).stdout
        _copy_in(server, dest, text)
    try:
        server.sh(PIKU_SETUP, public_key.strip())  # type: ignore[attr-defined]
    except AssertionError as e:
        return f"piku did not install: {str(e).splitlines()[-1][:200]}"
    return None


def _copy_in(server: object, dest: str, data: bytes) -> None:
    with tempfile.NamedTemporaryFile() as fh:
        fh.write(data)
        fh.flush()
        subprocess.run(["docker", "cp", fh.name, f"{server.id}:{dest}"], check=True)  # type: ignore[attr-defined]


def piku_workspace(tmp: Path, env: dict) -> Path:
    """The same app for piku: its Procfile needs `release:` to be a "generic" app; ENV sets its port."""
    ws = tmp / "ws-piku"
    ws.mkdir()
    git(ws, "init", "-q", "-b", "main", env=env)
    (ws / "app.py").write_text(APP)
    (ws / "Procfile").write_text("web: python3 app.py\nrelease: true\n")
    (ws / "ENV").write_text("PORT=8002\nBIND_ADDRESS=0.0.0.0\n")
    (ws / "version.txt").write_text("p0\n")
    git(ws, "add", "-A", env=env)
    git(ws, "commit", "-qm", "p0", env=env)
    return ws


def by_piku(ws: Path, env: dict, ip: str, url: str, version: str) -> float:
    release(ws, env, version)
    start = time.perf_counter()
    git(ws, "push", "-q", f"piku@{ip}:hello", "main", env=env)
    wait_for(url, version)
    return time.perf_counter() - start


def release(ws: Path, env: dict, version: str) -> None:
    (ws / "version.txt").write_text(version + "\n")
    git(ws, "commit", "-qam", version, env=env)


def by_bridge(ws: Path, env: dict, url: str, version: str) -> float:
    release(ws, env, version)
    start = time.perf_counter()
    pushed = subprocess.run([*BRIDGE, "push"], cwd=ws, env=env, capture_output=True, text=True)
    if pushed.returncode != 0:
        raise RuntimeError("bridge push failed: " + (pushed.stdout + pushed.stderr)[-1500:])
    wait_for(url, version)
    return time.perf_counter() - start


def by_hand(ws: Path, env: dict, ip: str, url: str, version: str) -> float:
    release(ws, env, version)
    start = time.perf_counter()
    git(ws, "push", "-q", f"root@{ip}:/srv/hand.git", "main", env=env)
    restarted = subprocess.run([*ssh_options(Path(env["HOME"])), f"root@{ip}", "systemctl restart hand"], env=env,
                               capture_output=True, text=True)
    if restarted.returncode != 0:
        raise RuntimeError("ssh systemctl restart hand failed: " + restarted.stderr[-500:])
    wait_for(url, version)
    return time.perf_counter() - start


def service_gap(url: str, action: Callable[[], object]) -> tuple[float, int]:
    """While `action` runs: the longest stretch (ms) from the last good answer before a failed one to the
    next good answer, and how many probes failed. 0 and 0 when nothing was ever refused."""
    stop, failed, gaps = threading.Event(), [0], [0.0]

    def poll() -> None:
        last_ok, failing = time.perf_counter(), False
        while not stop.is_set():
            ok = answers_any(url)
            now = time.perf_counter()
            if ok:
                if failing:
                    gaps.append(now - last_ok)
                last_ok, failing = now, False
            else:
                failed[0] += 1
                failing = True
            time.sleep(0.002)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    time.sleep(0.3)
    action()
    time.sleep(1.0)
    stop.set()
    thread.join()
    return max(gaps) * 1000, failed[0]


def run_quiet(argv: list, env: dict, cwd: Path) -> None:
    subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True)


def main() -> int:
    build_image()
    with tempfile.TemporaryDirectory(prefix="bench-apps-") as folder:
        tmp = Path(folder)
        server = start_server(tmp)
        try:
            return run(tmp, server)
        finally:
            server.stop()


def run(tmp: Path, server: object) -> int:
    env = setup_home(tmp, server)
    ip = server.ip  # type: ignore[attr-defined]
    setup_hand(server)
    ws = tmp / "ws"
    ws.mkdir()
    git(ws, "init", "-q", "-b", "main", env=env)
    (ws / "bridge.yaml").write_text(f"workspace: bench\ndefault: prod\nremotes:\n  prod: ssh://root@{ip}/srv/bench\n")
    (ws / "app.py").write_text(APP)
    (ws / "Procfile").write_text("web: python3 app.py\n")
    (ws / "version.txt").write_text("v0\n")
    git(ws, "add", "-A", env=env)
    git(ws, "commit", "-qm", "v0", env=env)
    subprocess.run([*BRIDGE, "init"], cwd=ws, env=env, check=True, capture_output=True)
    bridge_url, hand_url = f"http://{ip}:8000/", f"http://{ip}:8001/"
    by_bridge(ws, env, bridge_url, "w0")
    by_hand(ws, env, ip, hand_url, "w1")
    ours = [by_bridge(ws, env, bridge_url, f"b{n}") for n in range(ROUNDS)]
    hand = [by_hand(ws, env, ip, hand_url, f"h{n}") for n in range(ROUNDS)]
    piku_missing = setup_piku(server, (Path(env["HOME"]) / ".ssh" / "id_ed25519.pub").read_text())
    piku, piku_gap = [], []
    if piku_missing is None:
        piku_ws, piku_url = piku_workspace(tmp, env), f"http://{ip}:8002/"
        by_piku(piku_ws, env, ip, piku_url, "q0")
        piku = [by_piku(piku_ws, env, ip, piku_url, f"p{n}") for n in range(ROUNDS)]
        piku_gap = [service_gap(piku_url, lambda n=n: by_piku(piku_ws, env, ip, piku_url, f"r{n}")) for n in range(3)]
    ssh = [*ssh_options(Path(env["HOME"])), f"root@{ip}"]
    gaps = {
        "restart": ([service_gap(bridge_url, lambda: run_quiet([*BRIDGE, "restart"], env, ws)) for _ in range(3)],
                    [service_gap(hand_url, lambda: run_quiet([*ssh, "systemctl restart hand"], env, ws))
                     for _ in range(3)]),
        "push": ([service_gap(bridge_url, lambda n=n: by_bridge(ws, env, bridge_url, f"g{n}")) for n in range(3)],
                 [service_gap(hand_url, lambda n=n: by_hand(ws, env, ip, hand_url, f"k{n}")) for n in range(3)]),
    }
    a, b = statistics.median(ours), statistics.median(hand)
    print("| work | bridge | by hand | ratio |\n|---|---|---|---|")
    print(f"| push -> new release serving (s, median of {ROUNDS}) | {a:.2f} | {b:.2f} | {a / b:.2f} |")
    for what, (mine, theirs) in gaps.items():
        ms_a, ms_b = statistics.median(g[0] for g in mine), statistics.median(g[0] for g in theirs)
        print(f"| {what} gap without service (ms, median of 3; failed probes in all 3) | {ms_a:.0f} "
              f"({sum(g[1] for g in mine)}) | {ms_b:.0f} ({sum(g[1] for g in theirs)}) | "
              f"{ms_a / max(ms_b, 1):.2f} |")
    if piku_missing is None:
        c, ms_c = statistics.median(piku), statistics.median(g[0] for g in piku_gap)
        ms_a_push = statistics.median(g[0] for g in gaps["push"][0])
        print(f"| push -> new release serving, bridge vs piku (s, median of {ROUNDS}) | {a:.2f} | piku {c:.2f} | "
              f"{a / c:.2f} |")
        print(f"| push gap without service, bridge vs piku (ms, median of 3; failed probes) | {ms_a_push:.0f} "
              f"| piku {ms_c:.0f} ({sum(g[1] for g in piku_gap)}) | {ms_a_push / max(ms_c, 1):.2f} |")
    else:
        print(f"({piku_missing})")
    print("(by hand: git push to a bare repo whose hook checks out + ssh systemctl restart, in place; bridge "
          "also makes a release, switches current and, nginx being installed, starts web beside the old one "
          "and switches its nginx front)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
