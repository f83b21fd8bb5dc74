"""Run every bench in one go: `python bench/run.py [NAME…]` (names: core, exec, sync, sandbox, tunnel, …).

Each bench_*.py starts its own servers, times bridge beside the tool a user would otherwise
use in the same run, and prints a markdown table with ratios. Needs root (sshd, a bench user).
"""
from __future__ import annotations

import runpy
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(names: list[str]) -> int:
    sys.path.insert(0, str(HERE))
    benches = sorted(HERE.glob("bench_*.py"))
    chosen = [b for b in benches if not names or b.stem.removeprefix("bench_") in names]
    failed = []
    for path in chosen:
        print(f"\n# {path.stem}", flush=True)
        start = time.monotonic()
        sys.argv = [str(path)]  # each bench parses its own (empty) arguments, not run.py's
        try:
            runpy.run_path(str(path), run_name="__main__")
        except SystemExit as e:  # a bench's own sys.exit(main()) must not end the whole run
            if e.code not in (None, 0):
                failed.append(path.stem)
        except Exception as e:  # one broken bench must not hide the others' figures
            failed.append(path.stem)
            print(f"{path.stem} FAILED: {type(e).__name__}: {e}", flush=True)
        print(f"({path.stem}: {time.monotonic() - start:.0f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
