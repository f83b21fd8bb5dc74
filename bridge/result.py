"""The one value every run returns, local, over SSH or in a sandbox."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.fleet import HostFailure


@dataclass
class ExecResult:
    """What a command did: its exit code, output and how long it took.

    `stdout`/`stderr` are text (UTF-8, undecodable bytes replaced), as subprocess's `text=True`
    and Fabric give; the exact bytes are `stdout_bytes`/`stderr_bytes`. `to_dict()` is the same
    result as JSON-ready values. `status` is one of ok, failed, timeout, oom, output_truncated,
    denied, unreachable.
    """

    exit_code: int
    stdout_bytes: bytes = b""
    stderr_bytes: bytes = b""
    duration: float = 0.0
    timed_out: bool = False
    host: str = "local"
    truncated: bool = False
    status: str = field(default="")
    error: str | None = None

    @classmethod
    def failure(cls, failure: HostFailure, duration: float = 0.0) -> ExecResult:
        """The result of a host the command never ran on (unreachable, refused, …): see fleet.host_failure."""
        return cls(failure.exit_code, host=failure.host, error=failure.error, status=failure.status, duration=duration)

    def __post_init__(self) -> None:
        if not self.status:
            self.status = self._derive_status()

    def _derive_status(self) -> str:
        if self.timed_out:
            return "timeout"
        if self.truncated:
            return "output_truncated"
        return "ok" if self.exit_code == 0 else "failed"

    @property
    def stdout(self) -> str:
        """The command's standard output as text (UTF-8 with replacement); bytes: `stdout_bytes`."""
        return self.stdout_bytes.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        """The command's standard error as text (UTF-8 with replacement); bytes: `stderr_bytes`."""
        return self.stderr_bytes.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        """True when the command exited 0 within its limits."""
        return self.exit_code == 0 and not self.timed_out

    def tail(self, lines: int = 10, stream: str = "stderr") -> str:
        """The last `lines` lines of stdout or stderr, for error reports."""
        text: str = getattr(self, stream)
        return "\n".join(text.splitlines()[-lines:])

    def to_dict(self) -> dict:
        """The result as JSON-ready values (`json.dumps(result.to_dict())`), output as text."""
        return {
            "host": self.host,
            "exit_code": self.exit_code,
            "status": self.status,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "duration": round(self.duration, 4),
            "timed_out": self.timed_out,
            "truncated": self.truncated,
            "error": self.error,
        }
