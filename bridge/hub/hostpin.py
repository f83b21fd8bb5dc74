"""The host keys of agents' sshd, pinned for the hub's own API runs (which log in through the agent).

The agent reports its sshd's host key in every hello; the hub files it in its account's known_hosts
under `hub://local/AGENT`, so the SSH layer checks it like any other host key. An enrolment (a new
one-time token) replaces the pin; a later hello only adds one where none is, so a key that changes
without a new enrolment is refused as CHANGED by the SSH layer.
"""
from __future__ import annotations

import base64
import binascii

from bridge.ssh import hostkeys


def known_hosts_name(agent: str) -> str:
    """The name the hub files `agent`'s sshd key under."""
    return f"hub://local/{agent}"


def pin_host_key(agent: str, reported: object, *, replace: bool) -> None:
    """File the agent's reported `[type, base64]` key; with `replace`, drop the name's old keys first."""
    if not (isinstance(reported, list) and len(reported) == 2 and all(isinstance(p, str) for p in reported)):
        return
    try:
        blob = base64.b64decode(reported[1], validate=True)
    except (binascii.Error, ValueError):
        return
    name = known_hosts_name(agent)
    if replace:
        _forget(name)
    elif hostkeys.known_keys(name):
        return
    hostkeys.trust(name, reported[0], blob)


def _forget(name: str) -> None:
    """Remove every line filed under exactly `name` from the hub account's known_hosts."""
    path = hostkeys.user_known_hosts()
    try:
        lines = path.read_text().splitlines(keepends=True)
    except OSError:
        return
    kept = [line for line in lines if line.split(" ", 1)[0] != name]
    if len(kept) != len(lines):
        path.write_text("".join(kept))
