"""`bridge ps / logs / restart / stop / start` and `bridge config`: the deployed apps.py on each target.

Every call is one exec of `apps.py --root ROOT <command>` (server/layout.apps_argv) through the shared
runner, fanned out over the targets; a host that fails becomes its row's error, so one bad host
never hides the others. Config values travel on stdin as JSON, never in a command line.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from bridge import targets
from bridge.config import Config, Remote
from bridge.errors import BridgeError, UsageError
from bridge.fleet import fan_out
from bridge.runners import open_runner
from bridge.server.layout import apps_argv

CONTROL_ACTIONS = ("restart", "stop", "start")
NOT_DEPLOYED = "can't open file"  # python3's words when apps.py is not there yet


class Process(NamedTuple):
    """One process as `bridge ps` shows it."""

    process: str
    unit: str
    state: str
    pid: int | None
    release: str | None
    since: str | None
    restarts: int


@dataclass(frozen=True)
class HostAnswer:
    """What one host said: apps.py's JSON answer, or the error that kept it from answering."""

    host: str
    data: dict = field(default_factory=dict)
    error: str | None = None
    unreachable: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    def processes(self) -> list[Process]:
        return [Process(**row) for row in self.data.get("processes", [])]

    def to_dict(self) -> dict:
        out = {"host": self.host, **self.data, "error": self.error}
        if "processes" in self.data:
            out["processes"] = [p._asdict() for p in self.processes()]
        return out


def server_remotes(config: Config, spec: str | None) -> list[Remote]:
    """The deploy targets among `spec` (plain git remotes run no app). Raises UsageError if none."""
    remotes = [r for r in targets.resolve(config, spec) if r.kind == "server"]
    if not remotes:
        raise UsageError(f"`{spec or 'default'}` names no server remote", hint="apps run on server remotes only")
    return remotes


def ask(config: Config, remote: Remote, args: list[str], stdin: bytes | None = None) -> HostAnswer:
    """Run apps.py ARGS on `remote` and parse its one-line JSON answer; failures become the answer's error."""
    try:
        with open_runner(config, remote) as runner:
            code, out, err = runner.run_capture(shlex.join(apps_argv(runner.path, *args)), stdin=stdin)
    except BridgeError as e:
        return HostAnswer(remote.name, error=e.message, unreachable=e.exit_code == 255)
    return parse_answer(remote.name, code, out.decode(errors="replace"), err.decode(errors="replace"))


def parse_answer(host: str, code: int, out: str, err: str) -> HostAnswer:
    lines = out.strip().splitlines()
    try:
        data = json.loads(lines[-1]) if lines else {}
    except ValueError:
        data = {}
    if NOT_DEPLOYED in err:
        return HostAnswer(host, error="nothing deployed here yet: `bridge push` first")
    if code != 0 or "error" in data:
        return HostAnswer(host, error=data.get("error") or (err or out).strip()[-300:] or f"exit {code}")
    return HostAnswer(host, data)


def on_each(config: Config, spec: str | None, args: list[str], stdin: bytes | None = None) -> list[HostAnswer]:
    return fan_out(config, server_remotes(config, spec), lambda r: ask(config, r, args, stdin))


def ps(config: Config, spec: str | None) -> list[HostAnswer]:
    """Each target's processes: state, pid, release, since, restarts."""
    return on_each(config, spec, ["ps"])


def control(config: Config, spec: str | None, action: str, process: str | None) -> list[HostAnswer]:
    """systemctl restart/stop/start of one process or all of them, on every target."""
    if action not in CONTROL_ACTIONS:
        raise UsageError(f"unknown action {action!r}")
    return on_each(config, spec, [action, *([process] if process else [])])


def logs(config: Config, spec: str | None, process: str | None, lines: int, follow: bool,
         on_line: Callable[[str, bytes], None]) -> list[int]:
    """Stream each target's journal of the app (journalctl) to `on_line(host, chunk)`; exit codes back."""
    args = ["logs", *([process] if process else []), "-n", str(lines), *(["-f"] if follow else [])]

    def one(remote: Remote) -> int:
        with open_runner(config, remote) as runner:
            script = shlex.join(apps_argv(runner.path, *args))
            result = runner.run_stream(script, on_stdout=lambda b: on_line(remote.name, b),
                                       on_stderr=lambda b: on_line(remote.name, b), capture=False)
        return result.exit_code

    return fan_out(config, server_remotes(config, spec), one)


def parse_pairs(pairs: list[str]) -> dict[str, str]:
    """KEY=VALUE words as a mapping. Raises UsageError naming the word without `=`."""
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"`{key}` is not KEY=VALUE", hint="bridge config set prod DATABASE_URL=postgres://...")
        values[key] = value
    return values


def config_set(config: Config, spec: str | None, values: dict[str, str], restart: bool) -> list[HostAnswer]:
    """Set the app's config on every target (values on stdin); restarts its processes unless told not to."""
    flags = [] if restart else ["--no-restart"]
    return on_each(config, spec, ["config-set", *flags], json.dumps(values).encode())


def config_unset(config: Config, spec: str | None, keys: list[str], restart: bool) -> list[HostAnswer]:
    return on_each(config, spec, ["config-unset", *keys, *([] if restart else ["--no-restart"])])


def config_list(config: Config, spec: str | None) -> list[HostAnswer]:
    return on_each(config, spec, ["config-list"])


def exit_code(answers: list[HostAnswer]) -> int:
    """As for exec across hosts: 0 all answered, 255 one was unreachable, else 1 if one failed."""
    if any(a.unreachable for a in answers):
        return 255
    return 0 if all(a.ok for a in answers) else 1
