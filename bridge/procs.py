"""Facts about local processes, shared by the features that leave a process behind (tunnel, sandbox pool)."""
from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists (signal 0 checks without touching it; EPERM means it exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
