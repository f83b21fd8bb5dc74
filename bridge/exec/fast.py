"""The fast paths of `bridge exec`: hand the run to the connection keeper, or run it here without Typer.

The keeper path imports only the stdlib (os, sys, _socket via bridge.ssh.keeper): no typer,
rich, paramiko or yaml, so a warm run costs an interpreter start plus one round trip on an open
SSH connection (or, with --sandbox, the container run on the keeper's warm engine client, local
targets included). When the keeper declines (a local target without --sandbox, another
environment) or cannot start, or with --no-reuse, the run happens in this process through
bridge.exec.command, still without Typer (~300 ms of imports here). Options it does not know
(--tty, --sudo, --help, a malformed value) return None before any output, and main() lets Typer
parse and report them.
"""
from __future__ import annotations

import _thread
import os
import stat
import sys
TYPE_CHECKING = False  # not typing's: importing typing took a warm exec from 18.5 to 34 ms CPU (1.98x to
# 3.67x ControlMaster, interleaved runs). mypy reads the name as True (tests/test_types.py); a keeper test
# keeps typing off the warm path.
if TYPE_CHECKING:
    from typing import Any

from bridge.limits import out_of_range
from bridge.ssh import keeper

KEEPER_MODULE = "bridge.exec.keeperd"
_VALUE_FLAGS = {"--on": "target", "--timeout": "timeout", "--env": "env", "-e": "env", "--cwd": "cwd",
                "--python": "python", "--forks": "forks"}


def try_warm(args: list[str]) -> tuple[int, bool] | None:
    """Run `bridge exec ARGS` without Typer: through the keeper, else in this process; None → Typer.

    Returns (exit code, whether the keeper wrote the client audit line).
    """
    request = parse(args)
    if request is None:
        return None
    no_reuse = request.pop("no_reuse") or os.environ.get("BRIDGE_NO_REUSE") == "1"
    if not no_reuse:
        code = _via_keeper({**request, "argv": ["exec", *args]})
        if code is not None:
            return code, True
    return _direct(request), False


def _via_keeper(request: dict) -> int | None:
    peer = keeper.connect_or_spawn(KEEPER_MODULE)
    if peer is None:
        return None
    try:
        return _run(peer, dict(request))
    finally:
        peer.close()


def _direct(request: dict) -> int:
    """In this process (no keeper, --no-reuse, a local target): what the Typer command would call."""
    from bridge.exec.command import ExecOptions, execute

    return execute(ExecOptions(command=tuple(request["command"]), target=request["target"], env=request["env"],
                               cwd=request["cwd"], timeout=request["timeout"], python=request["python"],
                               forks=request["forks"], json=request["json"], sandbox=request["sandbox"]))


def parse(args: list[str]) -> dict | None:
    """The request for `bridge exec` ARGS, or None for anything the warm path leaves to Typer."""
    cut = args.index("--") if "--" in args else len(args)
    found: dict = {"target": None, "timeout": None, "env": {}, "cwd": None, "python": None, "forks": None,
                   "json": False, "no_reuse": False, "sandbox": False, "command": args[cut + 1:], "positional": []}
    head = iter(args[:cut])
    for word in head:
        name, eq, value = word.partition("=") if word.startswith("--") else (word, "", "")
        if word in ("--json", "--no-reuse", "--sandbox"):
            found[word[2:].replace("-", "_")] = True
            continue
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
    if key in ("timeout", "forks"):
        try:
            value = (float if key == "timeout" else int)(value)  # type: ignore[assignment]
        except ValueError:
            return False
        if out_of_range(f"exec.{key}", value):  # type: ignore[arg-type]
            return False  # Typer's path refuses it with the range, as for a value from bridge.yaml
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


def _run(peer: keeper.Peer, request: dict) -> int | None:
    """Send the request; stdin (or the --python code) is read only once the keeper has accepted it."""
    request.update(cwd_client=os.getcwd(), ident=keeper.identity(), stdin=bool(request["python"]) or has_input())
    try:
        # our stdout and stderr go with it: the keeper writes a single host's output to them directly, as
        # OpenSSH's mux client hands its stdio to the master (cli.main put /dev/null on any closed one)
        peer.send_with_fds(b"R", repr(request).encode(), [1, 2])
        kind, hosts_payload = peer.recv()
    except (OSError, EOFError):
        return None  # the keeper was just going idle: the normal path still works
    if kind == b"X":  # it failed before running anything: its line, as cli.main would print it
        return _exit_frame(hosts_payload)
    if kind != b"A":
        return None
    _start_stdin(peer, _read_code(request))
    if not hosts_payload:
        return _stream(peer, request["target"] or "the default remote")
    return _stream_fleet(peer, hosts_payload.decode().split("\n"), request["json"])


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

    _thread.start_new_thread(run, ())  # a daemon thread; `threading` costs ~7 ms of imports


def _keeper_gone(where: str) -> int:
    """The keeper died mid-run (killed, machine shutting down): exit as an unreachable host, and say that
    the command may live on. sshd does not signal an exec session's command when its connection drops
    (no PTY, no SIGHUP): a `sleep` outlives it; only one that writes output dies, of SIGPIPE."""
    sys.stderr.write(f"bridge: error: the connection keeper went away mid-run: the command may still be "
                     f"running on {where}\n  hint: check there (e.g. ps) before you run it again; with "
                     f"--timeout the server ends it at the deadline\n")
    return 255


def _stream(peer: keeper.Peer, target: str) -> int:
    """Copy stdout/stderr frames to our fds until the exit frame; a vanished keeper is exit 255."""
    from bridge.exec.output import write_all

    while True:
        try:
            kind, payload = peer.recv()
        except (OSError, EOFError):
            return _keeper_gone(target)
        if kind in (b"1", b"2"):
            write_all(int(kind), payload)
        elif kind == b"X":
            return _exit_frame(payload)


def _exit_frame(payload: bytes) -> int:
    """X: "CODE\\n" + the text for our stderr."""
    from bridge.exec.output import write_all

    code, _, message = payload.partition(b"\n")
    write_all(2, message)
    return int(code)


def _stream_fleet(peer: keeper.Peer, hosts: list[str], as_json: bool) -> int:
    """Fleet frames: o/e (2-byte host index + data), d (a host's result line), X (the overall code)."""
    from bridge.exec.output import Prefixed, summary

    printer = None if as_json else Prefixed(hosts)
    captured: dict[int, tuple[list, list]] = {i: ([], []) for i in range(len(hosts))}
    rows: dict[int, dict] = {}
    while True:
        try:
            kind, payload = peer.recv()
        except (OSError, EOFError):
            return _keeper_gone(", ".join(h for i, h in enumerate(hosts) if i not in rows) or ", ".join(hosts))
        if kind in (b"o", b"e"):
            _fleet_output(printer, captured, hosts, kind, payload)
        elif kind == b"d":
            index, row = _done_row(hosts, payload)
            rows[index] = row
            if printer:
                printer.done(row["host"])
        elif kind == b"X":
            ordered = [rows[i] for i in sorted(rows)]
            _fleet_json(ordered, captured) if as_json else summary(ordered)
            return int(payload.partition(b"\n")[0])


def _fleet_output(printer: Any, captured: dict, hosts: list[str], kind: bytes, payload: bytes) -> None:
    index, stream = int.from_bytes(payload[:2], "big"), 1 if kind == b"o" else 2
    if printer:
        printer.output(hosts[index], stream, payload[2:])
    else:
        captured[index][stream - 1].append(payload[2:])


def _done_row(hosts: list[str], payload: bytes) -> tuple[int, dict]:
    """`index TAB code TAB status TAB duration TAB timed_out TAB error` → the row ExecResult.to_dict gives."""
    index, code, status, duration, timed_out, error = payload.decode().split("\t", 5)
    return int(index), {"host": hosts[int(index)], "exit_code": int(code), "status": status,
                        "duration": float(duration), "timed_out": timed_out == "1", "error": error or None}


def _fleet_json(rows: list[dict], captured: dict) -> None:
    """With --json: one line per host, output included, as the normal path prints them."""
    from bridge.exec.output import json_line

    for index, row in enumerate(rows):
        out, err = captured[index]
        json_line({**row, "stdout": b"".join(out).decode("utf-8", "replace"),
                   "stderr": b"".join(err).decode("utf-8", "replace")})


def has_input(fd: int = 0) -> bool:
    """True when stdin is a pipe or file worth forwarding (not a TTY, not /dev/null, not closed)."""
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    if os.isatty(fd):
        return False
    return not (stat.S_ISCHR(st.st_mode) and st.st_rdev == os.stat(os.devnull).st_rdev)
