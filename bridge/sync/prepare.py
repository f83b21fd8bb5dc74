"""Prepare a deploy root on a target (bare repo, hook, settings) through any "run argv with stdin" callable.

The same call serves local:// (subprocess) and SSH: the caller supplies `run`, we supply an argv
with no input in it (everything travels as JSON on stdin), so nothing needs shell quoting.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence, Tuple

from bridge.errors import RemoteError
from bridge.server.schema import DeploySettings

HERE = Path(__file__).resolve().parent.parent / "server"  # what is shipped to servers (bridge/server)
SERVER_FILES = ("hook.py", "layout.py", "schema.py", "procs.py", "releases.py", "units.py", "apps.py", "front.py",
                "deps.py")

# One line, no newline: survives any login shell once shlex-joined for SSH.
BOOTSTRAP = ("import json,sys;p=json.loads(sys.stdin.read());g={'__name__':'bridge_install'};"
             "exec(compile(p['program'],'bridge-install','exec'),g);g['main'](p)")

Run = Callable[[Sequence[str], bytes], Tuple[int, str]]
"""Run argv on the target with these stdin bytes; return (exit code, combined output)."""


@dataclass(frozen=True)
class PrepareRequest:
    """The argv and stdin that prepare a root; hand them to a runner as they are."""

    argv: list
    stdin: bytes = field(repr=False)


def prepare_request(root: str, settings: DeploySettings, *, deny_non_fast_forwards: bool = True,
                    python: str = "python3") -> PrepareRequest:
    """Build the one exec that prepares `root`; the root travels on stdin, never in a command line."""
    payload = {
        "root": root,
        "deny_non_fast_forwards": deny_non_fast_forwards,
        "settings": settings.as_json(),
        "files": {name: (HERE / name).read_text() for name in SERVER_FILES},
        "program": (HERE / "install.py").read_text(),
    }
    return PrepareRequest([python, "-c", BOOTSTRAP], json.dumps(payload).encode())


def prepare_root(run: Run, root: str, settings: DeploySettings, *, deny_non_fast_forwards: bool = True) -> dict:
    """Prepare `root` on the target behind `run`; returns the server's report. Raises RemoteError."""
    request = prepare_request(root, settings, deny_non_fast_forwards=deny_non_fast_forwards)
    code, output = run(request.argv, request.stdin)
    if code != 0:
        raise RemoteError("preparing %s failed (exit %d): %s" % (root, code, output.strip()[-500:]),
                          hint="the server needs git and python3 on PATH and write access to the path")
    return json.loads(output.strip().splitlines()[-1])


def run_local(argv: Sequence[str], stdin: bytes) -> Tuple[int, str]:
    """The `Run` for local:// targets."""
    proc = subprocess.run(list(argv), input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc.returncode, proc.stdout.decode(errors="replace")
