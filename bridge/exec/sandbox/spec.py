"""What a sandbox may do, and the container config that enforces it (deny by default)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from bridge.errors import ConfigError
from bridge.limits import size_bytes

if TYPE_CHECKING:
    from bridge.config import SandboxConfig

DEFAULT_IMAGE = "bridge-sandbox:bookworm"
BUILD_HINT = "run scripts/build-sandbox-image.sh (or set exec.sandbox.image in bridge.yaml)"
LABEL = "bridge.sandbox"

# PID 1 of every sandbox: reads a line count, then that many lines of shell (env exports, one
# `exec` built with shlex.join run in a subshell, and the end report, see run.launch_header),
# then evals them: the command runs as its child, the rest of stdin is its stdin, and once it
# exits the launcher reports its code in-band and exits with it. The container can be started
# ahead of time (pool) and still run exactly the command it is later given. `read` takes one byte
# at a time from a pipe (POSIX), so no stdin meant for the command is swallowed.
LAUNCHER = (
    'IFS= read -r n || exit 125; s=; '
    'while [ "$n" -gt 0 ]; do IFS= read -r l; s="$s$l\n"; n=$((n-1)); done; eval "$s"'
)


@dataclass(frozen=True)
class SandboxSpec:
    """Limits of one sandboxed run; the defaults deny everything not needed to compute."""

    image: str = DEFAULT_IMAGE
    memory: str = "512m"
    cpus: float = 1.0
    pids: int = 256
    network: str = "none"
    tmpfs_size: str = "64m"
    output_cap: int = 10 * 1024 * 1024
    workspace: str | None = None
    writable: bool = False
    user: str = "65534:65534"
    timeout: float = 0.0
    pool: int = 0

    def key(self) -> str:
        """A short digest of everything a container is created with (not timeout/cap/pool): pool match."""
        fields = {k: v for k, v in asdict(self).items() if k not in ("timeout", "output_cap", "pool")}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def parse_size(value: str | int, field: str = "size") -> int:
    """Bytes from `512m`, `1g`, `65536`; raises ConfigError naming the field."""
    size = size_bytes(value)
    if size is None:
        raise ConfigError(f"sandbox.{field}: {value!r} is not a size", "write it like 512m or 1g")
    return size


def container_config(spec: SandboxSpec, labels: dict[str, str]) -> dict:
    """The /containers/create body: the launcher as PID 1 with every restriction of the spec."""
    return {
        "Image": spec.image,
        "Cmd": ["/bin/sh", "-c", LAUNCHER],
        "User": spec.user,
        "WorkingDir": "/workspace" if spec.workspace else "/tmp",
        "Env": ["HOME=/tmp", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Labels": labels,
        "AttachStdin": True, "AttachStdout": True, "AttachStderr": True,
        "OpenStdin": True, "StdinOnce": True, "Tty": False,
        "NetworkDisabled": spec.network == "none",
        "HostConfig": host_config(spec),
    }


def host_config(spec: SandboxSpec) -> dict:
    """Limits and isolation: no network, capped memory/CPU/pids, read-only root, nothing mounted but the workspace."""
    memory = parse_size(spec.memory, "memory")
    return {
        "NetworkMode": spec.network,
        "Memory": memory,
        "MemorySwap": memory,  # equal: no swap beyond the limit
        "NanoCpus": int(spec.cpus * 1e9),
        "PidsLimit": spec.pids,
        "ReadonlyRootfs": True,
        "Tmpfs": {"/tmp": f"rw,noexec,nosuid,nodev,size={parse_size(spec.tmpfs_size, 'tmpfs_size')}"},
        "Mounts": _mounts(spec),
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges"],
        "Privileged": False,
        "LogConfig": {"Type": "none"},  # output travels over attach only; nothing written to disk
    }


def _mounts(spec: SandboxSpec) -> list[dict]:
    if not spec.workspace:
        return []
    return [{"Type": "bind", "Source": spec.workspace, "Target": "/workspace", "ReadOnly": not spec.writable}]


def spec_from_config(config: "SandboxConfig", workspace: str | None = None, timeout: float = 0.0) -> SandboxSpec:
    """The spec for `exec.sandbox` of bridge.yaml, with the workspace to mount (a checkout or `current`)."""
    return SandboxSpec(image=config.image, memory=config.memory, cpus=config.cpus, pids=config.pids,
                       network=config.network, tmpfs_size=config.tmpfs,
                       output_cap=parse_size(config.output_limit, "output_limit"), workspace=workspace,
                       writable=config.workspace_writable, timeout=timeout, pool=config.pool)
