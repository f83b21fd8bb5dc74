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

from bridge import frames
from bridge.exec import requests
from bridge.exec.options import ExecOptions, parse
from bridge.ssh import keeper

KEEPER_MODULE = "bridge.exec.keeperd"


def try_warm(args: list[str]) -> tuple[int, bool] | None:
    """Run `bridge exec ARGS` without Typer: through the keeper, else in this process; None → Typer.

    Returns (exit code, whether the keeper wrote the client audit line).
    """
    options = parse(args)
    if options is None:
        return None
    if not (options.no_reuse or os.environ.get("BRIDGE_NO_REUSE") == "1"):
        code = _via_keeper(options, ["exec", *args])
        if code is not None:
            return code, True
    return _direct(options), False


def _via_keeper(options: ExecOptions, argv: list[str]) -> int | None:
    peer = keeper.connect_or_spawn(KEEPER_MODULE)
    if peer is None:
        return None
    try:
        return _run(peer, options, argv)
    finally:
        peer.close()


def _direct(options: ExecOptions) -> int:
    """In this process (no keeper, --no-reuse, a local target, a plan error to report): the Typer command's call."""
    from bridge.exec.command import execute

    return execute(options)


def _run(peer: frames.Peer, options: ExecOptions, argv: list[str]) -> int | None:
    """Send the request; stdin (or `--python -`) is read only once the keeper has accepted it (a --python FILE
    the keeper reads itself, as the plan does)."""
    stdin = options.python == "-" or (not options.python and has_input())
    request = requests.Request(options=options, argv=tuple(argv), cwd=os.getcwd(), ident=requests.identity(),
                               stdin=stdin)
    try:
        # our stdout and stderr go with it: the keeper writes a single host's output to them directly, as
        # OpenSSH's mux client hands its stdio to the master (cli.main put /dev/null on any closed one)
        peer.send_with_fds(b"R", requests.encode(request), [1, 2])
        kind, payload = peer.recv()
    except (OSError, EOFError):
        return None  # the keeper was just going idle: the normal path still works
    if kind == b"X":  # it failed before running anything: its line, as cli.main would print it
        return _exit_frame(payload)
    if kind != b"A":
        return None
    hosts = requests.decode(requests.Accepted, payload).hosts
    if stdin:
        _start_stdin(peer, sys.stdin.buffer.read() if options.python == "-" else None)
    if not hosts:
        return _stream(peer, options.target or "the default remote")
    return _stream_fleet(peer, list(hosts), options.json)


def _start_stdin(peer: frames.Peer, code: bytes | None) -> None:
    """Forward our stdin (or the `--python -` code) as I frames, then E."""

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


def _stream(peer: frames.Peer, target: str) -> int:
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
    """X: the exit code, and the text for our stderr."""
    from bridge.exec.output import write_all

    done = requests.decode(requests.Exit, payload)
    write_all(2, done.message.encode())
    return done.code


def _stream_fleet(peer: frames.Peer, hosts: list[str], as_json: bool) -> int:
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
            return requests.decode(requests.Exit, payload).code


def _fleet_output(printer: Any, captured: dict, hosts: list[str], kind: bytes, payload: bytes) -> None:
    index, stream = int.from_bytes(payload[:2], "big"), 1 if kind == b"o" else 2
    if printer:
        printer.output(hosts[index], stream, payload[2:])
    else:
        captured[index][stream - 1].append(payload[2:])


def _done_row(hosts: list[str], payload: bytes) -> tuple[int, dict]:
    """A HostDone frame → (its index, the row ExecResult.to_dict gives)."""
    done = requests.decode(requests.HostDone, payload).as_dict()
    index = done.pop("index")
    return index, {"host": hosts[index], **done}


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
