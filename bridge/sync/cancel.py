"""`bridge deploy cancel`: the hook stops the deploy holding its lock (SIGTERM); we relay its verdict."""
from __future__ import annotations

import json
from dataclasses import dataclass

from bridge import targets
from bridge.config import Config, Remote
from bridge.errors import BridgeError
from bridge.fleet import fan_out
from bridge.sync.target import Target

DONE = "bridge:done "


@dataclass(frozen=True)
class CancelResult:
    """One host: the pid of the deploy it stopped (None: none ran), `current` after it, or an error."""

    host: str
    pid: int | None = None
    current: str | None = None
    error: str | None = None
    exit_code: int = 0


def cancel(config: Config, spec: str | None) -> list[CancelResult]:
    """Cancel the running deploy on every server target, in parallel."""
    servers = [r for r in targets.resolve(config, spec) if r.kind == "server"]
    return fan_out(config, servers, lambda r: cancel_one(config, r))


def cancel_one(config: Config, remote: Remote) -> CancelResult:
    try:
        with Target(config, remote) as target:
            code, out, err = target.run(target.hook("--cancel"))
    except BridgeError as e:
        return CancelResult(remote.name, error=e.message, exit_code=int(e.exit_code))
    done = [json.loads(line[len(DONE):]) for line in out.splitlines() if line.startswith(DONE)]
    if not done:
        return CancelResult(remote.name, error=(err or out).strip()[-300:] or f"exit {code}", exit_code=1)
    verdict = done[-1]
    return CancelResult(remote.name, verdict.get("cancelled"), verdict.get("current"), verdict.get("error"),
                        0 if verdict.get("result") == "ok" else 1)
