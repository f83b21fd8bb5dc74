"""Running programs for the deploy: the report's output lines, git on the bare repo, and a step's
program in its own session with a deadline, streamed line by line.

Runs on the server (stdlib, Python 3.9+) beside hook.py.
"""
from __future__ import annotations

import collections
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO

try:  # installed on the server: layout.py sits beside this file
    from layout import Layout, ServerError
except ImportError:  # imported from the bridge package
    from .layout import Layout, ServerError


class StepFailed(ServerError):
    """A deploy step failed; the message says why in one line."""


class Cancelled(StepFailed):
    """`bridge deploy cancel` (SIGTERM) stopped the deploy."""


# ---------------------------------------------------------------- output


def emit(line: str) -> None:
    """Print one line now: git relays hook output live only if we flush each line.

    A client that went away (Ctrl-C, a dropped connection) breaks the pipe: the deploy goes on to
    its verdict in deploys.jsonl, as the client told its user, with output to /dev/null.
    """
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        sys.stdout = open(os.devnull, "w")


def marker(kind: str, payload: dict) -> None:
    """A machine-readable line for the client: `bridge:<kind> <json>`."""
    emit("bridge:%s %s" % (kind, json.dumps(payload, sort_keys=True)))


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


# ---------------------------------------------------------------- processes


def clean_env() -> dict:
    """The environment minus git's hook variables (GIT_DIR=. would break any git the user runs)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}


def git(layout: Layout, *args: str, env: dict | None = None, stdin: bytes = b"") -> bytes:
    """Run git on the bare repo and return stdout; raises StepFailed with git's message."""
    return git_output(start_git(layout, *args, env=env, stdin=True), stdin)


def start_git(layout: Layout, *args: str, env: dict | None = None, stdin: bool = False) -> subprocess.Popen:
    """Start git on the bare repo; git_output() collects it (two can run side by side)."""
    return subprocess.Popen(["git", "--git-dir", str(layout.repo), *args], env=env or clean_env(),
                            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def git_output(proc: subprocess.Popen, stdin: bytes | None = None) -> bytes:
    """stdout of a started git; raises StepFailed with git's message."""
    out, err = proc.communicate(stdin)
    if proc.returncode != 0:
        raise StepFailed("git: " + err.decode(errors="replace").strip())
    return out


def detach(argv: list) -> None:
    """Start argv on its own, output discarded: the push's report does not wait for it."""
    subprocess.Popen(argv, cwd="/", env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)


def stream(argv: list, cwd: Path, env: dict, tail: collections.deque, timeout: float | None = None) -> int:
    """Run argv in its own session; echo its merged output line by line, keep the last lines in `tail`.

    Its output goes to a file the hook owns, not a pipe, and the step ends when argv exits: a
    background child it leaves (`nohup worker &`) holds that file, never the push. At `timeout`
    seconds, or on cancel, the whole session is killed; raises StepFailed for the timeout.
    """
    import tempfile

    fd, path = tempfile.mkstemp(prefix="step-", suffix=".log")
    try:
        with open(path, "rb") as reader:
            os.unlink(path)
            proc = subprocess.Popen(argv, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL, stdout=fd,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            os.close(fd)
            fd = -1
            return follow_output(proc, reader, tail, timeout)
    finally:
        if fd >= 0:
            os.close(fd)


def follow_output(proc: subprocess.Popen, reader: IO, tail: collections.deque, timeout: float | None) -> int:
    """Echo what proc writes until it exits; kill its session at the timeout or on any exception."""
    deadline = time.monotonic() + timeout if timeout else None
    partial = b""
    try:
        while True:
            try:
                code = proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                code = None
            partial = echo_lines(partial + reader.read(), tail, final=code is not None)
            if code is not None:
                return code
            if deadline is not None and time.monotonic() > deadline:
                raise StepFailed("timed out after %gs (deploy.step_timeout / deploy.timeout)" % (timeout or 0))
    except BaseException:
        kill_session(proc)
        raise


def echo_lines(data: bytes, tail: collections.deque, final: bool) -> bytes:
    """Emit each whole line of data (all of it when final); return the unfinished rest."""
    *lines, rest = data.split(b"\n")
    if final and rest:
        lines, rest = lines + [rest], b""
    for raw in lines:
        line = raw.decode(errors="replace").rstrip("\r")
        tail.append(line)
        emit(line)
    return rest


def kill_session(proc: subprocess.Popen) -> None:
    """TERM the process's session, KILL it after 5 s: a timed-out or cancelled step leaves nothing running."""
    import signal

    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
