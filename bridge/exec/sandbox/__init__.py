"""Run untrusted code in a locked-down Docker container, on this machine or a server's engine.

The docker SDK (engine.py, imported on first use) talks to the engine's socket: this machine's,
or a server's forwarded over bridge's SSH connection (forward.py).
"""
from __future__ import annotations

from .cleanup import remove_leftovers
from .engine import DEFAULT_URL, Engine
from .forward import forward_docker_socket
from .pool import drain, fill
from .run import Cancel, run_in_sandbox
from .spec import DEFAULT_IMAGE, SandboxSpec, spec_from_config

__all__ = ["DEFAULT_IMAGE", "DEFAULT_URL", "Cancel", "Engine", "SandboxSpec", "drain", "fill",
           "forward_docker_socket", "remove_leftovers", "run_in_sandbox", "spec_from_config"]
