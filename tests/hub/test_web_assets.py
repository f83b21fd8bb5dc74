"""xterm.js comes from the npm registry, checked against pinned sha512 integrities; a hub without it says so."""
from __future__ import annotations

import asyncio
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "vendor-xterm.py"


def test_the_script_vendors_the_pinned_files(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["addon-fit.js", "xterm.css", "xterm.js"]
    assert b"FitAddon" in (tmp_path / "addon-fit.js").read_bytes()
    assert b"xterm" in (tmp_path / "xterm.css").read_bytes()


def test_a_tarball_that_does_not_match_its_pin_writes_nothing(tmp_path: Path) -> None:
    script = runpy.run_path(str(SCRIPT))
    version, _integrity, files = script["PINS"]["@xterm/addon-fit"]
    forged = "sha512-" + "A" * 86 + "=="
    script["PINS"].clear()
    script["PINS"]["@xterm/addon-fit"] = (version, forged, files)
    with pytest.raises(script["VendorError"], match="integrity"):
        script["vendor"](tmp_path / "vendor")  # vendor() reads PINS from its own module globals
    assert not (tmp_path / "vendor").exists()


def test_a_hub_without_the_files_serves_a_clear_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bridge.hub import web

    monkeypatch.setattr(web, "WEB_DIR", tmp_path)  # a package built without its vendor/ folder
    response = asyncio.run(web.page(None, None))  # type: ignore[arg-type]
    assert response.status_code == 503
    assert b"scripts/vendor-xterm.py" in response.body


@pytest.mark.slow
def test_a_build_from_a_clean_checkout_vendors_xterm_into_the_wheel(tmp_path: Path) -> None:
    import zipfile

    source = tmp_path / "src"
    source.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    assert not (source / "bridge" / "hub" / "web" / "vendor").exists()  # not in git
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"),
                            str(source)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("bridge-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"bridge/hub/web/vendor/{n}" for n in ("xterm.js", "xterm.css", "addon-fit.js")} <= names
    assert {"bridge/hub/web/index.html", "bridge/hub/web/app.js", "bridge/hub/web/style.css"} <= names
