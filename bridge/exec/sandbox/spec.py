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

# The header every launcher reads on stdin (see run.launch_header): the run's nonce, a line count,
# then that many lines of shell (env exports and one `exec` built with shlex.join). The launcher runs
# them as its child, the rest of stdin being the command's stdin, then reports `NONCE:CODE` in-band
# on stdout and stderr (`:oom` appended when the memory cgroup's OOM killer ended it) and exits with
# CODE. So a container can be started ahead of time (pool) and still run exactly the command it is
# later given. Both read one byte at a time from the pipe, so no stdin meant for the command is
# swallowed.
#
# INIT is PID 1 when the image has python3: the kernel ignores signals without a handler sent to a
# namespace's init from inside it (so `kill -STOP 1` does nothing), and it makes itself non-dumpable,
# so the command (same uid, no CAP_SYS_PTRACE) cannot ptrace-stop it either: whatever the command
# does, the report comes when it exits. docker's own `Init` (tini) would not do: it stays
# ptraceable, and the launcher under it becomes an ordinary process the command can SIGSTOP.
INIT = """\
import os, signal
try:
    import ctypes
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0
except (ImportError, OSError, AttributeError):
    pass  # an image without ctypes/libc: still the signal-proof PID 1, only not ptrace-proof
signal.signal(signal.SIGINT, signal.SIG_DFL)
def line():
    got = b""
    while not got.endswith(b"\\n"):
        byte = os.read(0, 1)
        if not byte:
            os._exit(125)
        got += byte
    return got[:-1]
nonce = line()
script = b"\\n".join(line() for _ in range(int(line())))
child = os.posix_spawn("/bin/sh", ["/bin/sh", "-c", script], os.environ,
                       setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT))
while True:
    pid, status = os.wait()
    if pid == child:
        break
code = os.waitstatus_to_exitcode(status)
code = 128 - code if code < 0 else code
oom = b""
for events in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
    try:
        with open(events, "rb") as counts:
            if code == 137 and any(n.split()[:1] == [b"oom_kill"] and n.split()[1] != b"0" for n in counts):
                oom = b":oom"
    except OSError:
        pass  # cgroup v1 or v2: one of the two exists
report = nonce + b":%d%s\\n" % (code, oom)
os.write(1, report)
os.write(2, report)
os._exit(code)
"""
# Without python3 in the image, sh is PID 1 and the launcher (signal-proof as PID 1, not ptrace-proof).
LAUNCHER = (
    'command -v python3 >/dev/null 2>&1 && exec python3 -I -S -c "$1"; '
    'IFS= read -r k || exit 125; IFS= read -r n || exit 125; s=; '
    'while [ "$n" -gt 0 ]; do IFS= read -r l; s="$s$l\n"; n=$((n-1)); done; '
    '(eval "$s"); c=$?; echo "$k:$c"; echo "$k:$c" >&2; exit "$c"'
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
        "Cmd": ["/bin/sh", "-c", LAUNCHER, "bridge-launcher", INIT],
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
