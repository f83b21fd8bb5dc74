"""The one SSH layer: settings resolution, host-key policy, connections.

Usage: ``with connect(config, remote) as conn: ...``; ``conn.transport`` is the authenticated
paramiko Transport for channels and forwards. Features run commands through bridge.runners
(bridge.transport's contract), not through a Connection.
"""
from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing took a warm exec from 18.5 to 34 ms CPU (1.98x to
# 3.67x ControlMaster, interleaved runs). mypy reads the name as True (tests/test_types.py); a keeper test
# keeps typing off the warm path.
if TYPE_CHECKING:
    from bridge.config import Config, Remote
    from bridge.ssh.connection import Connection


def connect(config: "Config", remote: "Remote") -> "Connection":
    """An opened Connection to an ssh:// remote (jump hosts and ~/.ssh/config applied).

    Raises ConnectError, HostKeyError or AuthError (all exit 255).
    """
    from bridge.ssh.connection import Connection
    from bridge.ssh.settings import for_remote

    return Connection(for_remote(config, remote), trust_hint=f"bridge test --trust {remote.name}").open()
