"""The slimmed paramiko import: same version string, no importlib.metadata, and the real module for anything else.

Each case runs in a fresh interpreter, since an import can only be watched once per process.
"""
from __future__ import annotations

import json
import site
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(code: str, *paths: Path) -> dict:
    """Run `code` in a fresh `python -S` (as bin/bridge starts it: no site hook has loaded importlib.metadata)
    with the repo, `paths` and site-packages importable; it prints one JSON object."""
    path = ":".join(map(str, (REPO, *paths, *site.getsitepackages())))
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": path, "HOME": "/nonexistent"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_paramiko_gets_its_version_without_importlib_metadata() -> None:
    seen = _run("import json, sys\n"
                "from bridge.ssh.slim_import import slim_paramiko_import\n"
                "slim_paramiko_import()\n"
                "import paramiko\n"
                "print(json.dumps({'version': paramiko.__version__,\n"
                "                  'loaded': sorted(m for m in ('email', 'zipfile', 'csv', 'invoke') if sys.modules.get(m))}))")
    assert seen == {"version": metadata.version("paramiko"), "loaded": []}


def test_other_uses_get_the_real_module_afterwards() -> None:
    seen = _run("import json, sys\n"
                "from bridge.ssh.slim_import import slim_paramiko_import\n"
                "slim_paramiko_import()\n"
                "import paramiko\n"
                "import importlib.metadata\n"
                "yaml = importlib.metadata.version('PyYAML')\n"
                "from importlib.metadata import PackageNotFoundError, version\n"
                "try:\n"
                "    version('no-such-distribution-here')\n"
                "    missing = False\n"
                "except PackageNotFoundError:\n"
                "    missing = True\n"
                "print(json.dumps({'yaml': yaml, 'missing': missing,\n"
                "                  'real': type(sys.modules['importlib.metadata']).__name__ == 'module'}))")
    assert seen == {"yaml": metadata.version("PyYAML"), "missing": True, "real": True}


def _package(root: Path, name: str, version: str | None) -> None:
    """A package that asks importlib.metadata for its own version at import, as paramiko does."""
    (root / name).mkdir()
    (root / name / "__init__.py").write_text(f"from importlib import metadata\n__version__ = metadata.version({name!r})\n")
    if version is not None:
        info = root / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nA description.\n")


def test_a_package_with_a_dist_info_is_answered_from_it(tmp_path: Path) -> None:
    _package(tmp_path, "slimdemo", "7.8.9")
    seen = _run("import json, sys\n"
                "from bridge.ssh.slim_import import slim_paramiko_import\n"
                "slim_paramiko_import()\n"
                "import slimdemo\n"
                "print(json.dumps({'version': slimdemo.__version__, 'email': 'email' in sys.modules}))", tmp_path)
    assert seen == {"version": "7.8.9", "email": False}


def test_a_package_without_dist_info_falls_back_to_the_real_lookup(tmp_path: Path) -> None:
    _package(tmp_path, "slimdemo", None)
    seen = _run("import json\n"
                "from bridge.ssh.slim_import import slim_paramiko_import\n"
                "slim_paramiko_import()\n"
                "from importlib.metadata import PackageNotFoundError\n"
                "try:\n"
                "    import slimdemo\n"
                "    outcome = slimdemo.__version__\n"
                "except PackageNotFoundError as e:\n"
                "    outcome = 'not found: ' + str(e)\n"
                "print(json.dumps(outcome))", tmp_path)
    assert seen == "not found: No package metadata was found for slimdemo"
