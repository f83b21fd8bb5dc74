"""`bridge test`: is each remote ready? Reachable, host key trusted, auth, git, python3, disk, docker."""
from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field

from bridge.config import Config, Remote
from bridge.errors import AuthError, BridgeError, ChangedHostKey, ExitCode, UnknownHostKey
from bridge.fleet import HostFailure, fan_out, fleet_exit_code, host_failure
from bridge.runners import Runner, open_runner

MIN_FREE_KB = 100 * 1024
CONNECT_CHECKS = ("reachable", "host key", "auth")  # failing one of these is "cannot connect": exit 255

# Assumption about servers: POSIX sh, dirname, df -P. Prints key=value lines only.
_PROBE = """p={path}
while [ ! -d "$p" ]; do p=$(dirname "$p"); done
echo "git=$(git --version 2>/dev/null)"
echo "python3=$(python3 --version 2>&1 | grep -i '^python' | head -n 1)"
echo "docker=$(docker version --format '{{{{.Server.Version}}}}' 2>/dev/null | head -n 1)"
echo "disk=$(df -Pk "$p" 2>/dev/null | awk 'NR==2 {{print $4}}')"
"""


@dataclass
class Check:
    """One line of the report; `ok` None means shown for information only."""

    name: str
    ok: bool | None
    detail: str = ""


@dataclass
class RemoteReport:
    """Every check of one remote."""

    remote: str
    url: str
    checks: list[Check] = field(default_factory=list)
    trusted: str | None = None  # fingerprint added to known_hosts by --trust

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    @property
    def unreachable(self) -> bool:
        """Could not connect or authenticate (host key refused included)."""
        return any(c.ok is False and c.name in CONNECT_CHECKS for c in self.checks)

    @property
    def status(self) -> str:
        """As an exec or push result's: ok, failed (a check), unreachable."""
        return "unreachable" if self.unreachable else "ok" if self.ok else "failed"

    @property
    def exit_code(self) -> int:
        return int(ExitCode.CONNECT) if self.unreachable else 0 if self.ok else int(ExitCode.FAILED)

    def to_dict(self) -> dict:
        failed = next((c for c in self.checks if c.ok is False), None)
        return {"remote": self.remote, "url": self.url, "ok": self.ok, "trusted": self.trusted,
                "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
                "host": self.remote, "status": self.status, "exit_code": self.exit_code,
                "error": failed.detail if failed else None}


def exit_code(reports: list[RemoteReport]) -> int:
    """As exec and push exit (DESIGN §4): 255 a remote could not be reached or refused us, 1 a check
    failed, 0 all passed."""
    return fleet_exit_code(r.exit_code for r in reports)


def check_remotes(config: Config, remotes: list[Remote], *, trust: bool = False, forks: int | None = None
                  ) -> list[RemoteReport]:
    """Every remote's report, `forks` at a time; a host that raises is a report, never an escape."""

    def one(remote: Remote) -> RemoteReport:
        try:
            return check_remote(config, remote, trust=trust)
        except BridgeError as e:
            return failed_report(remote, host_failure(remote.name, e))

    return fan_out(config, remotes, one, forks=forks)


def failed_report(remote: Remote, failed: HostFailure) -> RemoteReport:
    """A remote the checks never ran on: its error as the failed `reachable` check (when it could not be
    reached) or a failed `checks` line, so status and exit code read as an exec result's."""
    detail = failed.error + (f" ({failed.hint})" if failed.hint else "")
    step = "reachable" if failed.status == "unreachable" else "checks"
    return RemoteReport(remote.name, remote.url, [Check(step, False, detail)])


def check_remote(config: Config, remote: Remote, *, trust: bool = False) -> RemoteReport:
    """Run every check against `remote`; never raises for a failed check, it reports it."""
    report = RemoteReport(remote.name, remote.url)
    if remote.kind == "git":
        report.checks.append(Check("kind", None, "plain git remote: not checked"))
        return report
    with open_runner(config, remote) as runner:
        if not _connect(runner, report, trust):
            return report
        _probe(runner, report, sandbox=config.exec.sandbox is not None)
        _check_deploy_needs(runner, report, deploy_needs(config))
    return report


def _connect(runner: Runner, report: RemoteReport, trust: bool) -> bool:
    """Open the connection, recording reachability, host key and auth (none for this machine); True when all passed."""
    start = time.monotonic()
    try:
        link = runner.connect()
    except UnknownHostKey as e:
        if not trust:
            return _fail_at(report, "host key", e)
        report.trusted = runner.trust_host_key()
        return _connect(runner, report, trust=False)
    except ChangedHostKey as e:
        return _fail_at(report, "host key", e)
    except AuthError as e:
        return _fail_at(report, "auth", e)
    except BridgeError as e:
        return _fail_at(report, "reachable", e)
    if not link.verified_host_key:
        return True
    report.checks += [Check("reachable", True, link.where),
                      Check("host key", True, "matches known_hosts"),
                      Check("auth", True, f"as {link.user}"),
                      Check("connect", True, f"{(time.monotonic() - start) * 1000:.0f} ms")]
    return True


def _fail_at(report: RemoteReport, step: str, error: BridgeError) -> bool:
    for passed in CONNECT_CHECKS[:CONNECT_CHECKS.index(step)]:
        report.checks.append(Check(passed, True))
    detail = error.message + (f" ({error.hint})" if error.hint else "")
    report.checks.append(Check(step, False, detail))
    return False


def _probe(runner: Runner, report: RemoteReport, sandbox: bool) -> None:
    start = time.monotonic()
    try:
        code, out, err = runner.run_capture("true", timeout=30)
        latency = (time.monotonic() - start) * 1000
        code, out, err = runner.run_capture(_PROBE.format(path=shlex.quote(runner.path or ".")), timeout=30)
    except BridgeError as e:
        report.checks.append(Check("commands", False, e.message))
        return
    facts = dict(line.split("=", 1) for line in out.decode(errors="replace").splitlines() if "=" in line)
    report.checks.append(Check("latency", True, f"{latency:.1f} ms"))
    report.checks.append(_present("git", facts.get("git", ""), "install git on the server"))
    report.checks.append(_present("python3", facts.get("python3", ""), "install python3 on the server"))
    report.checks.append(_disk(facts.get("disk", "")))
    docker = facts.get("docker", "")
    if sandbox:
        report.checks.append(_present("docker", docker, "install docker and start dockerd (needed by the sandbox)"))
    else:
        report.checks.append(Check("docker", None, docker or "not found (only needed for --sandbox)"))


def _present(name: str, version: str, fix: str) -> Check:
    return Check(name, bool(version), version or f"not found: {fix}")


def _disk(free_kb: str) -> Check:
    if not free_kb.isdigit():
        return Check("disk free", False, "could not read `df` output")
    free = int(free_kb)
    detail = f"{free / 1024 / 1024:.1f} GiB free" if free >= 1024 * 1024 else f"{free / 1024:.0f} MiB free"
    return Check("disk free", free >= MIN_FREE_KB, detail if free >= MIN_FREE_KB else f"{detail}: free some space")


# ---------------------------------------------------------------- what this workspace's deploy needs

# name -> (files in the workspace that need it, sh printing its version or nothing, the fix)
_NEEDS = {
    "python3-venv": (("requirements.txt", "pyproject.toml", "Pipfile.lock", "poetry.lock", "uv.lock"),
                     "python3 -c 'import ensurepip, venv' 2>/dev/null && echo ensurepip ok",
                     "install python3-venv on the server (the deploy makes a venv)"),
    "uv": (("uv.lock",), "uv --version 2>/dev/null", "install uv on the server (uv.lock is installed with uv sync)"),
    "npm": (("package.json",), "npm --version 2>/dev/null", "install node and npm on the server (apt install npm)"),
    "yarn": (("yarn.lock",), "yarn --version 2>/dev/null", "install yarn on the server (yarn.lock)"),
    "pnpm": (("pnpm-lock.yaml",), "pnpm --version 2>/dev/null", "install pnpm on the server (pnpm-lock.yaml)"),
    "systemd": (("Procfile",), "test -d /run/systemd/system && systemctl --version 2>/dev/null | head -n 1",
                "the app's processes run under systemd, which this server does not run"),
    "nginx": ((), 'PATH="$PATH:/usr/sbin:/sbin" command -v nginx',
              "deploy.front is nginx: apt-get install nginx-light on the server (or set deploy.front: auto)"),
}


def deploy_needs(config: Config) -> list[str]:
    """What the deploy of this workspace will need on a server, from the files it holds."""
    if config.root is None:
        return []
    needs = [name for name, (files, _, _) in _NEEDS.items() if any((config.root / f).is_file() for f in files)]
    if config.deploy.processes and "systemd" not in needs:
        needs.append("systemd")
    if config.deploy.front == "nginx" and "systemd" in needs:
        needs.append("nginx")
    return needs


def _check_deploy_needs(runner: Runner, report: RemoteReport, needs: list[str]) -> None:
    """One exec asks for every need; each becomes a required check."""
    if not needs:
        return
    script = "\n".join(f'echo "{name}=$({_NEEDS[name][1]})"' for name in needs)
    try:
        _, out, _ = runner.run_capture(script, timeout=30)
    except BridgeError as e:
        report.checks.append(Check("deploy needs", False, e.message))
        return
    facts = dict(line.split("=", 1) for line in out.decode(errors="replace").splitlines() if "=" in line)
    for name in needs:
        report.checks.append(_present(name, facts.get(name, "").strip(), _NEEDS[name][2]))
