"""unixserver.listen: a unix socket with the mode asked for, whatever the umask, and the umask untouched.

The umask is process-wide: a keeper's first client is served on another thread while it binds, so
listen() must not change it even for a moment. A thread racing a file creation against that moment
would fail only by chance, so the probe makes any os.umask call during listen() end the child.
Each case runs in a child process to keep pytest's umask out of it.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PROBE = """
import os, sys
os.umask(int(sys.argv[2], 8))
from bridge.unixserver import listen
umask, os.umask = os.umask, lambda mask: sys.exit("listen() changed the process-wide umask")
listener = listen(sys.argv[1], mode=int(sys.argv[3], 8))
print(oct(os.stat(sys.argv[1]).st_mode & 0o777), oct(umask(0)))
"""


@pytest.mark.parametrize(("umask", "mode"), [("077", "666"), ("000", "600"), ("022", "600")])
def test_socket_mode_is_set_at_creation_and_the_umask_is_left_alone(tmp_path: Path, umask: str, mode: str) -> None:
    path = tmp_path / "s.sock"
    proc = subprocess.run([sys.executable, "-c", PROBE, str(path), umask, mode], cwd=REPO, capture_output=True,
                          text=True, env={"PYTHONPATH": str(REPO)}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [oct(int(mode, 8)), oct(int(umask, 8))]
