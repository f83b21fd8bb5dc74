"""Drain a paramiko channel: read stdout and stderr apart, wait for the exit status (stdin: runners.feed_stdin)."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from bridge.errors import ConnectError

if TYPE_CHECKING:
    import paramiko

CHUNK = 1 << 20  # read what has arrived, up to 1 MiB: fewer, larger frames downstream
Sink = Callable[[bytes], None]


def pump(channel: "paramiko.Channel", *, on_stdout: Sink, on_stderr: Sink,
         deadline: float | None = None) -> int | None:
    """Stream the channel's output to the sinks until it exits; returns the exit status, None on timeout.

    A status of -1 from paramiko (no exit-status sent: the command died of a signal) is returned as is.
    """
    channel.settimeout(0.2)
    while True:
        got = _read_some(channel, on_stdout, on_stderr)
        if deadline is not None and time.monotonic() > deadline:
            return None
        if not got and channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
            _read_some(channel, on_stdout, on_stderr)
            return channel.recv_exit_status()
        if not got and channel.closed and not channel.exit_status_ready():
            raise ConnectError("the connection closed before the command finished", hint="run it again")


def _read_some(channel: "paramiko.Channel", on_stdout: Sink, on_stderr: Sink) -> bool:
    import socket

    got = False
    while channel.recv_stderr_ready():
        on_stderr(channel.recv_stderr(CHUNK))
        got = True
    try:
        data = channel.recv(CHUNK)
    except socket.timeout:
        return got
    if data:
        on_stdout(data)
        return True
    # recv returned b"": stdout is at EOF; wait for the rest without spinning
    if not channel.exit_status_ready():
        channel.status_event.wait(0.2)
    while channel.recv_stderr_ready():
        on_stderr(channel.recv_stderr(CHUNK))
        got = True
    return got
