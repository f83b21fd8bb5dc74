"""The keeper daemon (`python -m bridge.exec.keeperd`): runs `bridge exec` requests on pooled connections.

Started on demand by bridge.exec.fast; exits after BRIDGE_KEEPER_IDLE seconds (default 300)
without a client, or on SIGTERM, after pending sandbox removals. It serves only requests made
with the same HOME, XDG dirs, agent and BRIDGE_* settings it was started with, so a pooled
connection is only ever one this user's own config would have opened and checked.
`--sandbox` runs here too, local targets included, with the CLI's code (sandbox_link); the
used container is removed and the pool refilled on a thread once the client has its result.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bridge import config as cfg
from bridge import frames, targets
from bridge.errors import BridgeError, ExitCode, internal_error
from bridge.exec import requests
from bridge.exec.output import write_all
from bridge.exec.plan import Plan, plan
from bridge.exec.requests import Accepted, Declined, Exit, HostDone, Request
from bridge.exec.sandbox_link import KeptEngines, run_and_report
from bridge.exec.service import fleet_exit_code, run_fleet, script_for
from bridge.runners import Sink, open_runner
from bridge.security.client import record_operation
from bridge.result import ExecResult
from bridge.ssh import keeper
from bridge.ssh.pool import ConnectionPool


class Keeper:
    """The request handler: one shared pool (and sandbox engines on it), this process's identity."""

    def __init__(self, pool: ConnectionPool, sandboxes: KeptEngines) -> None:
        self.pool = pool
        self.sandboxes = sandboxes
        self.identity = requests.identity()
        self.configs = ConfigCache()

    def handle(self, peer: frames.Peer) -> None:
        """One client: plan, accept or decline, run with live output, send the exit frame."""
        _, payload, fds = peer.recv_with_fds()
        try:
            try:
                request = requests.decode(Request, payload)
            except requests.BadRecord as e:  # another bridge version, or not bridge at all: it runs alone
                peer.send(b"F", requests.encode(Declined(reason=str(e))))
                return
            self._isolated(peer, request, fds)
        finally:
            for fd in fds:
                os.close(fd)

    def _isolated(self, peer: frames.Peer, request: Request, fds: list[int]) -> None:
        """Each request is on its own thread and fails alone: an exception nothing translated becomes
        this client's exit frame (the line cli.main would print), and the keeper serves on."""
        started = time.monotonic()
        try:
            self._handle(peer, request, fds)
        except (OSError, EOFError):
            raise  # the client went away (keeper.serve expects it); the SSH layer translates its own
        except Exception as e:
            code, line = internal_error(e)
            record_operation(list(request.argv), code, time.monotonic() - started, request.cwd, request.options.env)
            peer.send(b"X", requests.encode(Exit(code=code, message=line)))

    def _handle(self, peer: frames.Peer, request: Request, fds: list[int]) -> None:
        planned = self._plan(request)
        if isinstance(planned, Declined):
            peer.send(b"F", requests.encode(planned))
            return
        config, run = planned
        started = time.monotonic()
        if request.options.sandbox:
            peer.send(b"A", requests.encode(Accepted()))
            code, message = self._run_sandbox(peer, request, config, run)
        elif len(run.remotes) > 1 or request.options.json:
            code, message = self._run_fleet(peer, request, config, run)
        else:
            peer.send(b"A", requests.encode(Accepted()))
            code, message = self._run(peer, request, config, run, fds)
        # The warm client skips its own audit line: this process already has the writer loaded. It is
        # written before the exit frame, so the line is on disk once the client has returned.
        record_operation(list(request.argv), code, time.monotonic() - started, request.cwd, request.options.env)
        peer.send(b"X", requests.encode(Exit(code=code, message=message)))

    def _plan(self, request: Request) -> tuple[cfg.Config, Plan] | Declined:
        """The config and plan the CLI would make, or why the client should take the normal path (which
        reports a plan error itself, exactly as the Typer command does)."""
        if request.ident != self.identity:
            return Declined(reason="different environment")
        try:
            config = self.configs.load(Path(request.cwd))
            run = plan(config, request.options, cwd=Path(request.cwd))
        except BridgeError as e:
            return Declined(reason=e.message)
        if not request.options.sandbox and any(_is_local(config, remote) for remote in run.remotes):
            return Declined(reason="a local target runs in the client")
        return config, run

    def _run(self, peer: frames.Peer, request: Request, config: cfg.Config, run: Plan,
             fds: list[int]) -> tuple[int, str]:
        """(exit code, text for the client's stderr), as the normal path would print it.

        Output goes straight to the client's stdout and stderr when it sent them (`fds`), else as frames.
        """
        output, remote, exec_request = None, run.remotes[0], run.request
        try:
            with open_runner(config, remote, pool=self.pool) as runner:
                stdin = _stdin(peer, request, run, runner.cancel)
                on_stdout: Sink
                on_stderr: Sink
                if len(fds) == 2:
                    output = ClientOutput(fds[0], fds[1], on_closed=runner.cancel)
                    on_stdout, on_stderr = output.stdout, output.stderr
                else:
                    on_stdout, on_stderr = (lambda data: peer.send(b"1", data)), (lambda data: peer.send(b"2", data))
                result = runner.run_stream(script_for(runner, exec_request), stdin=stdin, capture=False,
                                           timeout=exec_request.timeout, on_stdout=on_stdout, on_stderr=on_stderr)
        except BridgeError as e:
            return (int(ExitCode.FAILED), "") if output and output.closed else _error(e)
        if output and output.closed:
            return int(ExitCode.FAILED), ""
        timed_out = f"bridge: {remote.name}: timed out after {exec_request.timeout:g}s\n" if result.timed_out else ""
        return result.exit_code, timed_out

    def _run_sandbox(self, peer: frames.Peer, request: Request, config: cfg.Config, run: Plan) -> tuple[int, str]:
        """--sandbox with the CLI's code; the client hanging up removes the container at once."""
        from bridge.exec.sandbox import Cancel

        cancel = Cancel()
        stdin = b"".join(_stdin_frames(peer, cancel)) if request.stdin else run.code
        _watch(peer, cancel)
        try:
            code = run_and_report(config, run.remotes[0], run.request, stdin, request.options.json,
                                  lambda data: peer.send(b"1", data), lambda data: peer.send(b"2", data),
                                  kept=self.sandboxes, cancel=cancel)
        except BridgeError as e:
            return _error(e)
        return code, ""

    def _run_fleet(self, peer: frames.Peer, request: Request, config: cfg.Config, run: Plan) -> tuple[int, str]:
        """Fan out on pooled connections; host-tagged output frames, one result frame per host."""
        index = {remote.name: i for i, remote in enumerate(run.remotes)}
        peer.send(b"A", requests.encode(Accepted(hosts=tuple(index))))
        stdin = b"".join(_stdin_frames(peer, lambda: None)) if request.stdin else run.code

        def on_output(host: str, stream: int, data: bytes) -> None:
            peer.send(b"o" if stream == 1 else b"e", index[host].to_bytes(2, "big") + data)

        results = run_fleet(config, run.remotes, run.request, forks=request.options.forks or config.exec.forks,
                            stdin=stdin, on_output=on_output, pool=self.pool, capture=False,
                            on_done=lambda result: peer.send(b"d", _done(index[result.host], result)))
        return fleet_exit_code(results), ""


class ClientOutput:
    """The client's own stdout and stderr, passed with its request (SCM_RIGHTS, as OpenSSH's mux client
    hands its stdio to the master): a single host's output is written to them, not relayed through the
    client. A reader that goes away (`bridge exec … | head`) ends the run, exit 1, as it ended the client."""

    def __init__(self, stdout_fd: int, stderr_fd: int, *, on_closed: Callable[[], None]) -> None:
        self._fds = (stdout_fd, stderr_fd)
        self._on_closed = on_closed
        self.closed = False

    def stdout(self, data: bytes) -> None:
        self._write(self._fds[0], data)

    def stderr(self, data: bytes) -> None:
        self._write(self._fds[1], data)

    def _write(self, fd: int, data: bytes) -> None:
        if self.closed:
            return
        try:
            write_all(fd, data)
        except OSError:
            self.closed = True
            self._on_closed()


class ConfigCache:
    """Parsed configs by file stamps: a warm run must not re-parse YAML (~20 ms for 50 remotes)."""

    def __init__(self) -> None:
        self._configs: dict[tuple, cfg.Config] = {}

    def load(self, start: Path) -> cfg.Config:
        """cfg.load(start), reused while bridge.yaml and the user config are unchanged."""
        root = cfg.find_workspace(start)
        files = (cfg.user_config_path(), root / cfg.CONFIG_NAME if root else None)
        key = (root, *(_stamp(path) for path in files))
        if key not in self._configs:
            self._configs = {key: cfg.load(start)}  # keep one: the common case is one workspace
        return self._configs[key]


def _stamp(path: Path | None) -> tuple | None:
    try:
        st = path.stat() if path else None
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino) if st else None


def _error(error: BridgeError) -> tuple[int, str]:
    """(exit code, the error and hint lines) as cli.main prints them."""
    hint = f"  hint: {error.hint}\n" if error.hint else ""
    return int(error.exit_code), f"bridge: error: {error.message}\n{hint}"


def _done(index: int, result: ExecResult) -> bytes:
    """One host's result for the client's summary or JSON line."""
    return requests.encode(HostDone(index=index, exit_code=result.exit_code, status=result.status,
                                    duration=round(result.duration, 4), timed_out=result.timed_out,
                                    error=result.error))


def _is_local(config: cfg.Config, remote: cfg.Remote) -> bool:
    return targets.parse_url(remote.url, where=f"remotes.{remote.name}.url").is_local


def _stdin(peer: frames.Peer, request: Request, run: Plan, cancel: Callable[[], None]) -> Any:
    """A single host's stdin: the client's I frames, else the --python FILE's code (the client still
    watched for hanging up), else EOF at once."""
    if request.stdin:
        return _stdin_frames(peer, cancel)
    _watch(peer, cancel)
    return run.code


def _stdin_frames(peer: frames.Peer, on_gone: Callable[[], None]) -> Iterator[bytes]:
    """The client's stdin, from its I frames until E; `on_gone` when the client vanishes instead (Ctrl-C)."""
    while True:
        try:
            kind, payload = peer.recv()
        except (EOFError, OSError):
            on_gone()
            return
        if kind != b"I":
            return
        yield payload


def _watch(peer: frames.Peer, on_gone: Callable[[], None]) -> None:
    """No stdin to forward: a thread waits for the client to hang up, so a Ctrl-C frees the run at once.

    Returns None (the run's stdin: EOF at once). After a normal end the socket closes and
    `on_gone` finds nothing left to cancel.
    """

    def wait() -> None:
        try:
            peer.recv()
        except (EOFError, OSError):
            on_gone()

    threading.Thread(target=wait, daemon=True, name="client-watch").start()


def main(first: "socket.socket | None" = None) -> None:
    """Serve `first` (the client that forked us) and then all comers until idle or SIGTERM; finish
    sandbox removals, close every pooled connection on the way out."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwind: the finally blocks below run
    idle = float(os.environ.get("BRIDGE_KEEPER_IDLE", keeper.DEFAULT_IDLE))
    with ConnectionPool() as pool:
        sandboxes = KeptEngines(pool)
        try:
            keeper.serve(Keeper(pool, sandboxes).handle, idle=idle, on_idle=lambda: pool.close_idle(idle),
                         first=first)
        finally:
            sandboxes.close()


if __name__ == "__main__":
    main()
