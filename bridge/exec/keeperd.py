"""The keeper daemon (`python -m bridge.exec.keeperd`): runs `bridge exec` requests on pooled connections.

Started on demand by bridge.exec.fast; exits after BRIDGE_KEEPER_IDLE seconds (default 300)
without a client. It serves only requests made with the same HOME, XDG dirs, agent and
BRIDGE_* settings it was started with, so a pooled connection is only ever one this user's
own config would have opened and checked.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from bridge import config as cfg
from bridge import targets
from bridge.errors import BridgeError
from bridge.exec.fast import identity
from bridge.exec.service import ExecRequest, run_one
from bridge.ssh import keeper
from bridge.ssh.pool import ConnectionPool

PYTHON = ("python3", "-")


class Keeper:
    """The request handler: one shared pool, this process's identity."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.identity = identity()

    def handle(self, peer: keeper.Peer) -> None:
        """One client: plan, accept or decline, run with live output, send the exit frame."""
        _, payload = peer.recv()
        request = json.loads(payload)
        plan = self._plan(request)
        if isinstance(plan, str):
            peer.send(b"F", json.dumps({"reason": plan}).encode())
            return
        peer.send(b"A")
        peer.send(b"X", json.dumps(self._run(peer, request, *plan)).encode())

    def _plan(self, request: dict) -> tuple | str:
        """(config, remote, ExecRequest), or why the client should take the normal path."""
        if request.get("ident") != self.identity:
            return "different environment"
        try:
            config = cfg.load(Path(request["cwd_client"]))
            remotes = targets.resolve(config, request.get("target"))
        except BridgeError as e:
            return e.message
        if len(remotes) != 1 or _is_local(config, remotes[0]):
            return "not a single ssh target"
        command = PYTHON if request.get("python") else tuple(request["command"])
        timeout = request.get("timeout")
        timeout = timeout if timeout is not None else (config.exec.timeout or None)
        return config, remotes[0], ExecRequest(command, request["env"], request.get("cwd"), timeout)

    def _run(self, peer: keeper.Peer, request: dict, config: cfg.Config, remote: cfg.Remote,
             exec_request: ExecRequest) -> dict:
        stdin = _stdin_frames(peer) if request.get("stdin") else None
        try:
            result = run_one(config, remote, exec_request, stdin=stdin, pool=self.pool, capture=False,
                             on_stdout=lambda data: peer.send(b"1", data),
                             on_stderr=lambda data: peer.send(b"2", data))
        except BridgeError as e:
            return {"code": int(e.exit_code), "error": e.message, "hint": e.hint}
        message = f"bridge: {remote.name}: timed out after {exec_request.timeout:g}s" if result.timed_out else ""
        return {"code": result.exit_code, "message": message}


def _is_local(config: cfg.Config, remote: cfg.Remote) -> bool:
    return targets.parse_url(remote.url, where=f"remotes.{remote.name}.url").is_local


def _stdin_frames(peer: keeper.Peer) -> Iterator[bytes]:
    """The client's stdin, from its I frames until E (or until it goes away)."""
    while True:
        try:
            kind, payload = peer.recv()
        except EOFError:
            return
        if kind != b"I":
            return
        yield payload


def main() -> None:
    """Serve until idle; close every pooled connection on the way out."""
    idle = float(os.environ.get("BRIDGE_KEEPER_IDLE", keeper.DEFAULT_IDLE))
    with ConnectionPool() as pool:
        keeper.serve(Keeper(pool).handle, idle=idle, on_idle=lambda: pool.close_idle(idle))


if __name__ == "__main__":
    main()
