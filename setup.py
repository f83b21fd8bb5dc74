"""The build step setuptools runs: vendor xterm.js (scripts/vendor-xterm.py) into the package first.

Everything else about the package is in pyproject.toml. The files are fetched from the npm registry
and checked against pinned sha512 integrities; a checkout that has them already skips the fetch.
"""
import runpy
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildWithXterm(build_py):
    """build_py that first makes sure bridge/hub/web/vendor/ holds the pinned xterm.js files."""

    def run(self) -> None:
        script = runpy.run_path(str(HERE / "scripts" / "vendor-xterm.py"))
        if not script["vendored"]():
            try:
                script["vendor"](script["DEFAULT_DEST"])
            except script["VendorError"] as e:
                raise SystemExit(f"bridge build: cannot vendor xterm.js: {e}") from e
        self.__dict__.pop("data_files", None)  # computed lazily: recount now the files exist
        super().run()


setup(cmdclass={"build_py": BuildWithXterm})
