"""The shape of bridge/ in numbers: `python bench/code_metrics.py [REV]` (default: the working tree).

Issue #14 asks for a before/after table of the execution-core refactor: modules, functions, the
median and p90 length of a function, and the pairs `duplicates` finds. Each figure comes from the
same files (bridge/**/*.py, as git tracks them at REV), so two revisions compare like for like.
"""
from __future__ import annotations

import ast
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def sources(rev: str | None) -> dict[str, str]:
    """Each bridge/**/*.py at `rev` (or in the working tree), by path."""
    if rev is None:
        return {str(p.relative_to(REPO)): p.read_text() for p in sorted((REPO / "bridge").rglob("*.py"))}
    names = subprocess.run(["git", "-C", str(REPO), "ls-tree", "-r", "--name-only", rev, "bridge"],
                           capture_output=True, text=True, check=True).stdout.split()
    return {name: subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{name}"], capture_output=True,
                                 text=True, check=True).stdout for name in names if name.endswith(".py")}


def function_lengths(text: str) -> list[int]:
    """Lines of every function and method, nested ones counted on their own too."""
    return [node.end_lineno - node.lineno + 1 for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno]


def duplicate_pairs(files: dict[str, str]) -> str:
    """What `duplicates` says of bridge/ alone: its first line counts the pairs."""
    if not shutil.which("duplicates"):
        return "n/a (no duplicates command)"
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / name).write_text(text)
        out = subprocess.run(["duplicates", "--repo", tmp, "--seconds", "60"], capture_output=True,
                             text=True).stdout
    match = re.search(r"(\d+) pairs?", out)
    return match.group(1) if match else ("0" if "no duplicates" in out else out.splitlines()[0])


def main(argv: list[str]) -> int:
    if argv and argv[0].startswith("-"):
        print(__doc__.strip())
        return 0 if argv[0] in ("-h", "--help") else 2
    rev = argv[0] if argv else None
    files = sources(rev)
    lengths = sorted(n for text in files.values() for n in function_lengths(text))
    lines = sum(text.count("\n") for text in files.values())
    p90 = lengths[int(0.9 * (len(lengths) - 1))] if lengths else 0
    print(f"| {rev or 'working tree'} | modules | lines | functions | median lines | p90 lines | duplicates pairs |")
    print("|---|---|---|---|---|---|---|")
    print(f"| bridge/ | {len(files)} | {lines} | {len(lengths)} | {statistics.median(lengths):g} | {p90} "
          f"| {duplicate_pairs(files)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
