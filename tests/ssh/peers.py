"""Things that listen on a TCP port but are not a working sshd: for handshake-failure tests.

`http` is Python's real http.server in a subprocess; `silent` accepts and never says a word;
`garbage` sends bytes that are no SSH greeting. Each stops what it started (by PID, or its
own thread and sockets). `tunnel_up` runs a real `bridge tunnel up` for a while.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from tests.sshd import free_port, wait_port

GARBAGE = b"\x00\xff\x13garbage-not-ssh\x07"


@contextmanager
def http_server() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def raw_server(greeting: bytes) -> Iterator[int]:
    """Accepts every connection, sends `greeting` (maybe nothing) and holds it open until the end."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                continue
            held.append(sock)
            if greeting:
                sock.sendall(greeting)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for sock in [*held, listener]:
            sock.close()


PEERS = {
    # our greeting is an HTTP/0.9 request to it, and an HTTP/0.9 answer is the bare error page
    "http": (http_server, (), ('not an SSH server: it sent "<!DOCTYPE HTML>',)),
    "silent": (raw_server, (b"",), ("no SSH handshake within 2s", "accepted the connection and sent nothing")),
    "garbage": (raw_server, (GARBAGE,), ('not an SSH server: it sent "\\x00\\xff\\x13garbage-not-ssh\\x07"',)),
}


@contextmanager
def tunnel_up(workspace: Path, env: dict, log: Path, until: Callable[[str], bool]) -> Iterator[str]:
    """Run `bridge tunnel up` in `workspace` (output to `log`) until `until(log text)` or 30 s; yield the
    text, then stop it by its PID."""
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bridge", "tunnel", "up"], cwd=workspace, env=env,
                                stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while not until(log.read_text()) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        yield log.read_text()
    finally:
        proc.terminate()
        proc.wait(10)
