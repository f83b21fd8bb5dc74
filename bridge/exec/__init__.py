"""Run commands and Python code on one target or a fleet: `from bridge.exec import CodeExecutor, ExecResult`.

Names load on first use, so the warm `bridge exec` path (bridge.exec.fast) stays stdlib-only.
"""
from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing took a warm exec from 18.5 to 34 ms CPU (1.98x to
# 3.67x ControlMaster, interleaved runs). mypy reads the name as True (tests/test_types.py); a keeper test
# keeps typing off the warm path.
if TYPE_CHECKING:
    from typing import Any

    from bridge.exec.api import CodeExecutor
    from bridge.result import ExecResult

__all__ = ["CodeExecutor", "ExecResult"]


def __getattr__(name: str) -> Any:
    if name == "CodeExecutor":
        from bridge.exec.api import CodeExecutor

        return CodeExecutor
    if name == "ExecResult":
        from bridge.result import ExecResult

        return ExecResult
    raise AttributeError(f"module 'bridge.exec' has no attribute {name!r}")
