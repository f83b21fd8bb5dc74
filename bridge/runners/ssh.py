"""A server over the one SSH layer (bridge.ssh): exec channels, PTYs, forwarded pipes, all on one Connection."""
from __future__ import annotations

import os
import shlex
import time
from typing import TYPE_CHECKING

from bridge.config import Remote
from bridge.errors import ConnectError, TimeoutExpired, UsageError
from bridge.runners.base import GRACE, Runner, feed_stdin
from bridge.server.scripts import UNIX_RELAY, signal_argv, tagged
from bridge.transport import TIMED_OUT, Link, Sink, Stdin

if TYPE_CHECKING:
    import paramiko

    from bridge.ssh.connection import Connection


class SSHRunner(Runner):
    """A server over the one SSH layer; the connection opens on first use."""

    def __init__(self, remote: Remote, path: str, connection: "Connection", *, owned: bool = True) -> None:
        super().__init__(remote, path)
        self.connection = connection
        self.owned = owned
        self._channel: "paramiko.Channel | None" = None
        self._tag: str | None = None  # BRIDGE_RUN of the run in progress (scripts.tagged)

    def close(self) -> None:
        if self.owned:
            self.connection.close()

    def connect(self) -> Link:
        self.connection.open()
        return Link(self.describe(), self.connection.settings.user, verified_host_key=True, carrier=self.connection)

    def trust_host_key(self) -> str:
        from bridge.ssh import hostkeys
        from bridge.ssh.connection import probe_host_key

        name, key_type, blob = probe_host_key(self.connection.settings)
        hostkeys.trust(name, key_type, blob)
        return f"{key_type} {hostkeys.fingerprint(blob)}"

    def describe(self) -> str:
        return self.connection.settings.describe()

    def cancel(self) -> None:
        """End the running command's tree on the server (SIGTERM, then SIGKILL), then close its channel:
        pump() ends, the thread is free. Closing alone would leave a non-PTY command running there
        (a verbatim run, which has no tag, is left to notice its closed pipes)."""
        channel = self._channel
        if channel is not None:
            self._signal("SIGTERM", escalate=True)
            channel.close()

    def signal(self, sig: int) -> None:
        self._signal(_signal_name(sig), escalate=False)

    def _signal(self, name: str, *, escalate: bool) -> None:
        tag = self._tag
        if tag is None:
            return
        try:
            self._pump(shlex.join(signal_argv(tag, name, escalate)), None, _drop, _drop, time.monotonic() + 10)
        except ConnectError:
            pass  # the connection is gone: nothing more can reach the server from here

    def run_capture(self, command: str, *, stdin: bytes | None = None,
                    timeout: float | None = None) -> tuple[int, bytes, bytes]:
        out: list[bytes] = []
        err: list[bytes] = []
        deadline = time.monotonic() + timeout if timeout else None
        status = self._pump(command, stdin, out.append, err.append, deadline)
        if status is None:
            raise TimeoutExpired(f"remote command did not finish within {timeout:g}s")
        return status, b"".join(out), b"".join(err)

    def _execute(self, script: str, stdin: Stdin, out: Sink, err: Sink, timeout: float | None,
                 verbatim: bool) -> int:
        deadline = time.monotonic() + timeout + GRACE if timeout else None
        tag = None if verbatim else os.urandom(8).hex()
        self._tag = tag
        try:
            command = script if tag is None else tagged(script, tag, timeout)
            status = self._pump(command, stdin, out, err, deadline, track=True)
        finally:
            self._tag = None
        return TIMED_OUT if status is None else status

    def _pump(self, command: str, stdin: Stdin, out: Sink, err: Sink, deadline: float | None,
              track: bool = False) -> int | None:
        """One exec channel to its end: the status (255 when none came), None past `deadline`.
        `track`: the channel is the run cancel() closes."""
        from bridge.ssh.pump import pump

        channel = self.connection.exec_channel(command)
        if track:
            self._channel = channel
        try:
            feed_stdin(stdin, channel.sendall, channel.shutdown_write)
            status = pump(channel, on_stdout=out, on_stderr=err, deadline=deadline)
        finally:
            if track:
                self._channel = None
            channel.close()
        if status is None:
            return None
        if status < 0 and not self.connection.is_open:  # no status because the connection itself went
            raise ConnectError(f"lost the connection to {self.remote.name} mid-run",
                               hint="run it again; `bridge test` checks the way there")
        return status if status >= 0 else 255  # -1 on a live connection: killed by a signal, no status

    def open_pty(self, command: str, *, size: tuple[int, int] = (80, 24)) -> "ChannelPty":
        return ChannelPty(self.connection.exec_channel(command, pty=True, term_size=size))

    def open_pipe(self, *, port: int | None = None, unix: str | None = None,
                  host: str = "127.0.0.1") -> "paramiko.Channel":
        """A direct-tcpip channel for a port; for a unix socket, an exec channel running a stdlib relay."""
        if unix is not None:
            return self._unix_pipe(unix)
        if port is None:
            raise UsageError("open_pipe needs a port or a unix socket path")
        import paramiko

        try:
            return self.connection.transport.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0),
                                                          timeout=self.connection.settings.connect_timeout)
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise ConnectError(f"{self.describe()}: cannot reach {host}:{port} there: {e or type(e).__name__}",
                               hint="is something listening there, and does sshd allow TCP forwarding?") from e

    def open_stdio(self, command: str) -> "paramiko.Channel":
        """An exec channel: its stdin and stdout are the stream, its stderr stays on `recv_stderr`."""
        return self.connection.exec_channel(command)

    def _unix_pipe(self, path: str) -> "paramiko.Channel":
        channel = self.connection.exec_channel(shlex.join(["python3", "-I", "-S", "-c", UNIX_RELAY, path]))
        try:
            ready = channel.recv(1)
        except (OSError, EOFError):
            ready = b""
        if ready == b"\0":
            return channel
        reason = _stderr(channel)
        channel.close()
        raise ConnectError(f"{self.describe()}: cannot reach unix socket {path} there: {reason or 'no relay'}",
                           hint="is something listening on it (and python3 on the server)?")


def _drop(data: bytes) -> None:
    """A sink for output nobody reads (the signal sender's)."""


def _signal_name(sig: int) -> str:
    """SIGTERM for 15: the server's own number for it may differ, its name does not."""
    import signal

    return signal.Signals(sig).name


def _stderr(channel: "paramiko.Channel") -> str:
    channel.recv_exit_status()
    parts = []
    while channel.recv_stderr_ready():
        parts.append(channel.recv_stderr(4096))
    return b"".join(parts).decode(errors="replace").strip()


class ChannelPty:
    """An exec channel with a PTY as a bridge.transport.PtySession."""

    def __init__(self, channel: "paramiko.Channel") -> None:
        self.channel = channel

    def read(self, timeout: float) -> bytes | None:
        import socket

        self.channel.settimeout(timeout)
        try:
            return self.channel.recv(65536)
        except socket.timeout:
            return None

    def write(self, data: bytes) -> None:
        self.channel.sendall(data)

    def resize(self, columns: int, rows: int) -> None:
        self.channel.resize_pty(width=columns, height=rows)

    def wait(self) -> int:
        status = self.channel.recv_exit_status()
        return status if status >= 0 else 255

    def close(self) -> None:
        self.channel.close()  # sshd hangs the PTY up: the command gets SIGHUP
