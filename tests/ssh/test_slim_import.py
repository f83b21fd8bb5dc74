"""The slimmed paramiko import (no invoke), and the paramiko behaviour it leans on.

If paramiko starts needing invoke at import, or stops importing it, a test here fails: the first
breaks bridge, the second leaves sys.modules["invoke"] = None paying no rent (remove it then).
Each case runs in a fresh interpreter, since an import can only be watched once per process.
"""
from __future__ import annotations

import json
import site
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(code: str, *paths: Path) -> dict:
    """Run `code` in a fresh `python -S` (as bin/bridge starts it: no site hook has loaded importlib.metadata)
    with the repo, `paths` and site-packages importable; it prints one JSON object."""
    path = ":".join(map(str, (REPO, *paths, *site.getsitepackages())))
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": path, "HOME": "/nonexistent"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_paramiko_imports_and_reads_ssh_config_without_invoke() -> None:
    seen = _run("import json, sys\n"
                "from bridge.ssh.slim_import import slim_paramiko_import\n"
                "slim_paramiko_import()\n"
                "import paramiko\n"
                "config = paramiko.SSHConfig.from_text('Host web\\n  HostName 10.0.0.9\\n  Port 2222\\n')\n"
                "print(json.dumps({'web': [config.lookup('web')[k] for k in ('hostname', 'port')],\n"
                "                  'invoke': sys.modules.get('invoke') is not None}))")
    assert seen == {"web": ["10.0.0.9", "2222"], "invoke": False}


def test_paramiko_still_imports_invoke_when_left_alone() -> None:
    seen = _run("import json, sys\n"
                "import paramiko\n"
                "print(json.dumps(sys.modules.get('invoke') is not None))")
    assert seen is True, "paramiko no longer imports invoke: bridge/ssh/slim_import.py buys nothing now"
