"""`import paramiko` without the two large imports bridge never needs; call before paramiko loads.

paramiko's import is most of a cold `bridge exec`, and two parts of it serve nothing bridge does:

* paramiko/config.py imports `invoke` (a paramiko 5 requirement) only to run the `Match exec`
  lines of an ssh config (~40 % of `import paramiko` here). A None entry in sys.modules makes that
  import fail fast, and paramiko then leaves invoke unused. Done only when ~/.ssh/config has no
  `Match … exec`.
* paramiko/__init__.py asks `importlib.metadata.version("paramiko")` for its own version, and
  importlib.metadata imports email, zipfile, csv and more to read one line of paramiko's METADATA
  file (~25 ms here). Until something needs more, a stand-in module answers `version(name)` from
  the METADATA beside the package being imported, and hands anything else (another name, no
  dist-info, any other attribute) to the real importlib.metadata, which then replaces it.
"""
from __future__ import annotations

import importlib
import os
import re
import sys
from types import ModuleType

METADATA = "importlib.metadata"


def slim_paramiko_import() -> None:
    """Skip paramiko's invoke import when the ssh config does not need it, and its metadata import."""
    if "paramiko" in sys.modules:
        return
    _skip_invoke()
    if METADATA not in sys.modules:
        stand_in = _MetadataStandIn(METADATA)
        sys.modules[METADATA] = stand_in
        importlib.metadata = stand_in  # `import importlib.metadata` reads it


def _skip_invoke() -> None:
    if "invoke" in sys.modules:
        return
    from bridge import paths

    try:
        text = (paths.ssh_dir() / "config").read_text(errors="replace")
    except OSError:
        text = ""
    if not re.search(r"(?im)^\s*match\b.*\bexec\b", text):
        sys.modules["invoke"] = None  # type: ignore[assignment]


class _MetadataStandIn(ModuleType):
    """importlib.metadata for one question, a package's own version while it imports; else the real one."""

    def version(self, name: str) -> str:
        found = _version_beside(name)
        return found if found is not None else self._real().version(name)

    def __getattr__(self, name: str) -> object:
        return getattr(self._real(), name)

    def _real(self) -> ModuleType:
        if sys.modules.get(METADATA) is self:
            del sys.modules[METADATA]
        return importlib.import_module(METADATA)


def _version_beside(name: str) -> str | None:
    """The Version line of `name`'s one dist-info beside its (loading) package; None when not that simple."""
    package = sys.modules.get(name)
    paths = getattr(package, "__path__", None)
    if not paths:
        return None
    folder = os.path.dirname(os.path.abspath(list(paths)[0]))
    try:
        infos = [entry for entry in os.listdir(folder)
                 if entry.endswith(".dist-info") and _normal(entry.split("-")[0]) == _normal(name)]
        if len(infos) != 1:
            return None
        with open(os.path.join(folder, infos[0], "METADATA"), encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    return None  # the headers ended without a Version
                if line.startswith("Version:"):
                    return line.partition(":")[2].strip()
    except OSError:
        return None
    return None


def _normal(name: str) -> str:
    """A distribution name as dist-info folders spell it (PEP 503 runs of -_. as one _), lower case."""
    return re.sub(r"[-_.]+", "_", name).lower()
