"""The warm path of `bridge exec`: hand the run to the connection keeper, stream its frames, exit.

Imports only the stdlib (os, sys, json, socket via bridge.ssh.keeper): no typer, rich, paramiko
or yaml, so a warm run costs an interpreter start plus one round trip on an open SSH connection.
Anything it does not handle (fleet output, --tty, --sudo, --json, --sandbox, a config error)
returns None before any output, and main() takes the normal path.
"""
from __future__ import annotations

import json
import os
import stat
import sys
import threading

from bridge.ssh import keeper

KEEPER_MODULE = "bridge.exec.keeperd"
_VALUE_FLAGS = {"--on": "target", "--timeout": "timeout", "--env": "env", "-e": "env", "--cwd": "cwd",
                "--python": "python"}
_IDENT_SKIP = {"BRIDGE_KEEPER_IDLE", "BRIDGE_DEBUG", "BRIDGE_NO_REUSE", "BRIDGE_SUDO_PASSWORD"}


def try_warm(args: list[str]) -> int | None:
    """Run `bridge exec ARGS` through the keeper; None means "not here, take the normal path"."""
    if os.environ.get("BRIDGE_NO_REUSE") == "1":
        return None
    request = parse(args)
    if request is None:
        return None
    peer = keeper.connect_or_spawn(KEEPER_MODULE)
    if peer is None:
        return None
    try:
        return _run(peer, request)
    finally:
        peer.close()


def parse(args: list[str]) -> dict | None:
    """The request for `bridge exec` ARGS, or None for anything the warm path leaves to Typer."""
    cut = args.index("--") if "--" in args else len(args)
    found: dict = {"target": None, "timeout": None, "env": {}, "cwd": None, "python": None,
                   "command": args[cut + 1:], "positional": []}
    head = iter(args[:cut])
    for word in head:
        name, eq, value = word.partition("=") if word.startswith("--") else (word, "", "")
        if name not in _VALUE_FLAGS and name.startswith("-"):
            return None
        if name not in _VALUE_FLAGS:
            found["positional"].append(word)
            continue
        if not _store(found, _VALUE_FLAGS[name], value if eq else next(head, None)):
            return None
    return _finish(found)


def _store(found: dict, key: str, value: str | None) -> bool:
    if value is None:
        return False
    if key == "env":
        name, sep, val = value.partition("=")
        found["env"][name] = val
        return bool(sep)
    if key == "timeout":
        try:
            value = float(value)  # type: ignore[assignment]
        except ValueError:
            return False
    found[key] = value
    return True


def _finish(found: dict) -> dict | None:
    """Mirror the Typer command: TARGET positional (or --on), command after `--`, or --python."""
    positional = found.pop("positional")
    if len(positional) > 1 or (found["command"] and found["python"]):
        return None
    if positional and found["target"]:
        found["command"] = positional + found["command"]
    elif positional:
        found["target"] = positional[0]
    if not found["command"] and not found["python"]:
        return None
    return found


def identity() -> list:
    """What makes the keeper's view of config and keys the same as ours: HOME, XDG dirs, agent, BRIDGE_*."""
    names = ["HOME", "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR", "SSH_AUTH_SOCK"]
    names += sorted(k for k in os.environ if k.startswith("BRIDGE_") and k not in _IDENT_SKIP)
    return [[k, os.environ.get(k)] for k in names]


def _run(peer: keeper.Peer, request: dict) -> int | None:
    code = _read_code(request)
    request.update(cwd_client=os.getcwd(), ident=identity(), stdin=code is not None or has_input())
    try:
        peer.send(b"R", json.dumps(request).encode())
        kind, _ = peer.recv()
    except (OSError, EOFError):
        return None  # the keeper was just going idle: the normal path still works
    if kind != b"A":
        return None
    _start_stdin(peer, code)
    return _stream(peer)


def _read_code(request: dict) -> bytes | None:
    source = request.get("python")
    if not source:
        return None
    if source == "-":
        return sys.stdin.buffer.read()
    with open(source, "rb") as f:
        return f.read()


def _start_stdin(peer: keeper.Peer, code: bytes | None) -> None:
    """Forward our stdin (or the --python code) as I frames, then E; nothing when there is none."""
    if code is None and not has_input():
        return

    def run() -> None:
        try:
            if code is not None:
                peer.send(b"I", code)
            else:
                while data := os.read(0, 65536):
                    peer.send(b"I", data)
            peer.send(b"E")
        except OSError:
            pass  # the run ended first

    threading.Thread(target=run, daemon=True).start()


def _stream(peer: keeper.Peer) -> int:
    """Copy stdout/stderr frames to our fds until the exit frame; a vanished keeper is exit 255."""
    from bridge.exec.output import write_all

    while True:
        try:
            kind, payload = peer.recv()
        except (OSError, EOFError):
            sys.stderr.write("bridge: error: the connection keeper went away mid-run\n  hint: run it again\n")
            return 255
        if kind in (b"1", b"2"):
            write_all(int(kind), payload)
        elif kind == b"X":
            return _finish_exit(json.loads(payload))


def _finish_exit(done: dict) -> int:
    if done.get("error"):
        sys.stderr.write(f"bridge: error: {done['error']}\n")
        if done.get("hint"):
            sys.stderr.write(f"  hint: {done['hint']}\n")
    elif done.get("message"):
        sys.stderr.write(done["message"] + "\n")
    return int(done["code"])


def has_input(fd: int = 0) -> bool:
    """True when stdin is a pipe or file worth forwarding (not a TTY, not /dev/null, not closed)."""
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    if os.isatty(fd):
        return False
    return not (stat.S_ISCHR(st.st_mode) and st.st_rdev == os.stat(os.devnull).st_rdev)
