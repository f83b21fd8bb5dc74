"""The hub's own audit log, off the servers: bridge/security's hash chain, one line per decision.

The hub reuses the security feature's chain (`append`, `build_entry`, `read_entries`) rather than a
copy of it: one chain format, one `bridge audit verify` for client, server and hub logs alike.
"""
from __future__ import annotations

from pathlib import Path

from bridge.security import audit as chain


class HubAudit:
    """Appends chained entries to `<state>/audit.jsonl` (or $BRIDGE_AUDIT_LOG); never records a token."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, *, user: str, action: str, agent: str | None = None, decision: str = "allowed",
               command: str | None = None, workspace: str | None = None, exit_code: int | None = None,
               duration: float | None = None, reason: str | None = None, source: str | None = None) -> None:
        """One line; a disk error is not allowed to take the hub down, so it is swallowed after a warning."""
        entry = chain.build_entry(action=action, user=user, host=agent, decision=decision, command=command,
                                  workspace=workspace, exit_code=exit_code, duration=duration, rule=reason)
        entry["source"] = source
        try:
            chain.append(self.path, entry, chain.audit_key())
        except OSError as e:
            print(f"bridge hub: warning: audit log {self.path} not written: {e.strerror or e}", flush=True)

    def entries(self, limit: int) -> list[dict]:
        """The last `limit` entries, oldest first."""
        if not self.path.is_file():
            return []
        return list(chain.read_entries(self.path))[-limit:]
