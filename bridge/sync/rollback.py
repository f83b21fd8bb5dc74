"""`bridge rollback`: the hook switches `current` back (under its deploy lock); we relay its verdict."""
from __future__ import annotations

import json

from bridge.config import Config, Remote
from bridge.errors import RemoteError
from bridge.sync.report import DeployReport, Emit, MarkerReader
from bridge.sync.target import Target


def releases(config: Config, remote: Remote) -> list[dict]:
    """The server's complete releases, oldest first, each with sha, ref, time and `current`."""
    with Target(config, remote) as target:
        code, out, err = target.run(target.hook("--list"))
    if code != 0:
        raise RemoteError(f"{remote.name}: cannot list releases: {(err or out).strip()[-300:]}",
                          hint="has anything been pushed? `bridge push` prepares and deploys")
    return json.loads(out.strip().splitlines()[-1])


def rollback(config: Config, remote: Remote, to: str | None, emit: Emit) -> DeployReport:
    """Switch `current` to `to` (default: the release before it). Raises RemoteError when refused."""
    reader = MarkerReader(remote.name, emit)
    with Target(config, remote) as target:
        target.stream(target.hook("--rollback", *([to] if to else [])), reader.feed)
    done = reader.report.done
    if not reader.report.ok:
        error = (done or {}).get("error") or "\n".join(reader.report.lines[-5:]) or "no answer from the hook"
        raise RemoteError(f"{remote.name}: rollback refused: {error}",
                          hint="`bridge rollback --list` shows the releases you can go back to")
    return reader.report
