"""The audit line of an SSH connection that runs no command: an `ssh -N` port forward.

sshd starts the forced command only for a session, so a key with `port-forwarding` can
forward all day without the guard ever running. sshd's PAM session stack does run once per
connection, as root, session or not, with the key that authenticated in `SSH_AUTH_INFO_0`
(`ExposeAuthInfo yes`). This hook, run there by pam_exec, finds that key's managed line in the
root-owned authorized_keys and, when the line lets the key forward ports, writes one audit
line (`action: connect`) where that key's guard writes its own. It never fails a login.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from bridge.security.guard import audit_connection
from bridge.security.keys import guard_settings, list_keys


def on_pam_session(keys_file: str, env: Mapping[str, str]) -> None:
    """At `open_session`, audit a connection whose managed key may forward ports; anything else is left alone.

    `keys_file` is sshd's AuthorizedKeysFile pattern (`%u` is the login account, `%%` a percent sign).
    """
    words = env.get("SSH_AUTH_INFO_0", "").split()
    if env.get("PAM_TYPE") != "open_session" or len(words) < 3 or words[0] != "publickey":
        return
    path = Path(keys_file.replace("%%", "\0").replace("%u", env.get("PAM_USER", "")).replace("\0", "%"))
    entry = next((e for e in list_keys(path) if e.key.blob == words[2]), None)
    if entry is None or "port-forwarding" not in entry.options.split(","):
        return
    settings = guard_settings(entry)
    if settings is not None:
        audit_connection(settings)
