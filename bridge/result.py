"""The one value every run returns, local, over SSH or in a sandbox."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ExecResult:
    """What a command did: its exit code, output and how long it took.

    `status` is one of ok, failed, timeout, oom, output_truncated, denied, unreachable.
    """

    exit_code: int
    stdout: bytes = b""
    stderr: bytes = b""
    duration: float = 0.0
    timed_out: bool = False
    host: str = "local"
    truncated: bool = False
    status: str = field(default="")
    error: str | None = None

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
    def ok(self) -> bool:
        """True when the command exited 0 within its limits."""
        return self.exit_code == 0 and not self.timed_out

    def tail(self, lines: int = 10, stream: str = "stderr") -> str:
        """The last `lines` lines of stdout or stderr, decoded leniently, for error reports."""
        data: bytes = getattr(self, stream)
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    def to_dict(self) -> dict:
        """A JSON-ready view (output decoded as UTF-8 with replacement)."""
        return {
            "host": self.host,
            "exit_code": self.exit_code,
            "status": self.status,
            "stdout": self.stdout.decode("utf-8", "replace"),
            "stderr": self.stderr.decode("utf-8", "replace"),
            "duration": round(self.duration, 4),
            "timed_out": self.timed_out,
            "truncated": self.truncated,
            "error": self.error,
        }
