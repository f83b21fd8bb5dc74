"""Server heads kept on the client: what makes a cut tail on a server detectable.

`bridge audit head TARGET` asks the server for the hash of its newest audit line (through the
guard, any role with the `audit` permission, a viewer too) and records it in the client's own
audit log as an `audit-head` entry. A later `bridge audit verify --expect-head @TARGET` (or the
hash itself, on the server) proves the server's log still holds that line, and every line
before it, unchanged: whoever cuts the tail cuts the line the client saw.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

from bridge.security import audit

HEAD_COMMAND = ("bridge", "audit", "head")
HASH = re.compile(r"[0-9a-f]{64}\Z")
ACTION = "audit-head"


def fetch(target: str | None) -> list[tuple[str, str]]:
    """(remote name, head) of each server `target` names, each recorded in the client log; raises BridgeError."""
    from bridge import config as cfg
    from bridge.runners import open_runner
    from bridge.targets import resolve

    config = cfg.load(required=True)
    heads = []
    for remote in resolve(config, target):
        with open_runner(config, remote) as runner:
            code, out, err = runner.run_capture(shlex.join(HEAD_COMMAND), timeout=30)
        head = _parse(remote.name, code, out, err)
        audit.record(action=ACTION, command=shlex.join(HEAD_COMMAND), exit_code=0, host=remote.name,
                     server_head=head, url=remote.url)
        heads.append((remote.name, head))
    return heads


def _parse(name: str, code: int, out: bytes, err: bytes) -> str:
    """The head in a server's answer; raises AuditError on anything else."""
    text = out.decode(errors="replace").strip()
    if code != 0 or not HASH.match(text):
        why = (err.decode(errors="replace").strip().splitlines() or [text or f"exit {code}"])[-1]
        raise audit.AuditError(f"{name}: no audit head: {why}",
                               hint="the server needs bridge, and the key a role with the audit permission")
    return text


def recorded(target: str, log: Path | None = None) -> str:
    """The last head the client log recorded for `target`; raises AuditError when there is none."""
    head = None
    for entry in audit.read_entries(log or audit.client_log_path()):
        if entry.get("action") == ACTION and entry.get("host") == target and entry.get("server_head"):
            head = str(entry["server_head"])
    if head is None:
        raise audit.AuditError(f"the client log has no head recorded for {target!r}",
                               hint=f"run `bridge audit head {target}` first")
    return head


def expected(value: str | None) -> str | None:
    """`--expect-head`: a hash as given, or `@TARGET` for the last head recorded for it; raises AuditError."""
    if value is None or not value.startswith("@"):
        return value
    return recorded(value[1:])
