"""Work on many remotes at once: the one fan-out (`--forks` at a time) and the one reading of a host's error.

exec, sudo, push, status, `bridge test`, the app commands and cancel all go through `fan_out`, and
exec, sudo, push, status and test read a host's BridgeError through `host_failure`: a host that
cannot be reached is `unreachable` with exit code 255 in each, and `fleet_exit_code` (DESIGN §4).
"""
from __future__ import annotations

from typing import Callable, Iterable, NamedTuple, TypeVar

from bridge.config import Config, Remote
from bridge.errors import BridgeError, ExitCode

T = TypeVar("T")


class HostFailure(NamedTuple):
    """One host's BridgeError as a fleet result: `unreachable` (exit 255) when it could not be reached
    or refused us (host key, auth), else `failed` with the error's own exit code."""

    host: str
    status: str
    exit_code: int
    error: str
    hint: str | None


def host_failure(host: str, error: BridgeError) -> HostFailure:
    code = int(error.exit_code)
    return HostFailure(host, "unreachable" if code == ExitCode.CONNECT else "failed", code, error.message, error.hint)


def fan_out(config: Config, remotes: list[Remote], work: Callable[[Remote], T], *,
            forks: int | None = None) -> list[T]:
    """`work` for each remote, `forks` (default `exec.forks`) at once; results in the remotes' order.

    `work` turns its host's BridgeError into a result (through `host_failure`), so one bad host never
    hides the others. One remote runs in this thread: the common single-host push needs no pool.
    """
    if len(remotes) == 1:
        return [work(remotes[0])]
    from concurrent.futures import ThreadPoolExecutor  # here: a single-host run never needs it

    with ThreadPoolExecutor(max_workers=max(1, min(forks or config.exec.forks, len(remotes)))) as pool:
        return list(pool.map(work, remotes))


def fleet_exit_code(codes: Iterable[int]) -> int:
    """0 all ok; 255 if a host was unreachable; else 1 (DESIGN §4). One host: its own code."""
    codes = list(codes)
    if all(c == 0 for c in codes):
        return 0
    if len(codes) == 1:
        return codes[0]
    return int(ExitCode.CONNECT) if ExitCode.CONNECT in codes else int(ExitCode.FAILED)
