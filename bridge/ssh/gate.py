"""At most SLOTS unauthenticated connections to one server at a time, across every bridge process of
this user (the keeper, direct runs, pushes, tunnels): sshd drops new connections beyond its
`MaxStartups` (default 10:30:100, a busy or hardened server less), before it says a word.

A slot is an flock on one of SLOTS files per host:port in the 0700 runtime dir; the kernel frees
it when its holder exits, killed or not, so no slot ever leaks. A client that finds no free slot
by its deadline goes ahead anyway: a slow holder must not turn into a failure of its own.
"""
from __future__ import annotations

import os
import time

from bridge.ssh import keeper

SLOTS = 3  # well under OpenSSH's default MaxStartups start (10): leaves room for everyone else's logins
POLL = 0.01


class Slot:
    """A held handshake slot (a context manager); `fd` is None when none was free in time."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    def __enter__(self) -> "Slot":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the file releases its flock
            self.fd = None


def handshake_slot(hostname: str, port: int, wait: float) -> Slot:
    """A slot for a handshake with hostname:port, waiting up to `wait` seconds for one."""
    import fcntl

    folder = _folder()
    name = "".join(c if c.isalnum() or c in ".-" else "_" for c in hostname)[:64]
    fds = [os.open(os.path.join(folder, f"{name}_{port}.{i}"), os.O_RDWR | os.O_CREAT, 0o600)
           for i in range(SLOTS)]
    deadline = time.monotonic() + wait
    try:
        while True:
            for fd in fds:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue
                fds.remove(fd)
                return Slot(fd)
            if time.monotonic() > deadline:
                return Slot(None)
            time.sleep(POLL * (1 + os.getpid() % 5))  # spread the waiters a little, without `random`
    finally:
        for fd in fds:
            os.close(fd)


def _folder() -> str:
    """<runtime dir>/handshakes, 0700 like the runtime dir it lives in."""
    folder = os.path.join(keeper.private_dir(keeper.runtime_dir()), "handshakes")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return folder
