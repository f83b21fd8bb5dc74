"""Dependency install by the deploy hook: a venv per requirements hash, reused while it is unchanged.

No network: requirements point at a wheel built here, with --no-index.
"""
from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from .test_hook import NASTY, Server, Workspace

REQUIREMENTS = "--no-index\n./wheels/tinypkg-1.0-py3-none-any.whl\n"
IMPORT_CHECK = "python -c 'import tinypkg; print(\"tinypkg\", tinypkg.VERSION)'"


def make_wheel(folder: Path) -> None:
    """A minimal valid wheel, so pip installs something real without an index."""
    files = {
        "tinypkg/__init__.py": "VERSION = '1.0'\n",
        "tinypkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
        "tinypkg-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (name, digest, len(text.encode())))
    record.append("tinypkg-1.0.dist-info/RECORD,,")
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / "tinypkg-1.0-py3-none-any.whl", "w") as whl:
        for name, text in files.items():
            whl.writestr(name, text)
        whl.writestr("tinypkg-1.0.dist-info/RECORD", "\n".join(record) + "\n")


@pytest.fixture
def app(tmp_path: Path) -> Workspace:
    server = Server(tmp_path / NASTY)
    server.prepare(commands=[IMPORT_CHECK])
    ws = Workspace(tmp_path / "ws", server)
    make_wheel(ws.path / "wheels")
    ws.write("requirements.txt", REQUIREMENTS)
    ws.write("app.py", "v1\n")
    ws.commit()
    return ws


def envs(server: Server) -> list:
    return sorted(os.listdir(server.root / ".bridge" / "envs"))


def test_venv_is_installed_then_reused_while_requirements_are_unchanged(app: Workspace) -> None:
    server = app.server
    first = app.push()
    assert first.done["result"] == "ok" and first.done["deps"] == "installed"
    assert "tinypkg 1.0" in first.lines
    (env,) = envs(server)
    ready = server.root / ".bridge" / "envs" / env / ".ready"
    stamp = ready.stat().st_mtime_ns
    assert os.readlink(server.current / ".venv") == str(server.root / ".bridge" / "envs" / env)

    app.write("app.py", "v2\n")
    app.commit()
    second = app.push()
    assert second.done["result"] == "ok" and second.done["deps"] == "reused"
    assert not any("Processing" in line or "Successfully installed" in line for line in second.lines)
    assert envs(server) == [env] and ready.stat().st_mtime_ns == stamp
    assert "tinypkg 1.0" in second.lines


def test_failed_install_keeps_current_and_the_good_env(app: Workspace) -> None:
    server = app.server
    app.push()
    good, (env,) = server.current_name(), envs(server)
    app.write("requirements.txt", REQUIREMENTS + "no-such-package-bridge-test==9.9\n")
    sha = app.commit()
    pushed = app.push()
    assert pushed.done["result"] == "failed" and pushed.done["failed_step"] == "deps:python"
    assert server.current_name() == good and server.releases() == [good]
    assert envs(server) == [env]  # the half-built env is gone, the live one kept
    assert server.hook("--deploy", sha).returncode == 1


def test_commands_see_the_venv_first_on_path(app: Workspace) -> None:
    server = app.server
    server.prepare(commands=['test "$(command -v python)" = "$VIRTUAL_ENV/bin/python"'])
    assert app.push().done["result"] == "ok"


def test_install_none_skips_dependencies(app: Workspace) -> None:
    app.server.prepare(install="none")
    pushed = app.push()
    assert pushed.done["deps"] == "none" and not (app.server.current / ".venv").exists()


def test_disk_full_fails_cleanly_and_leaves_current(tmp_path: Path) -> None:
    """A small tmpfs as the server disk: the push fits, the release does not."""
    mount = tmp_path / "small disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        server = Server(mount / "srv")
        server.prepare()
        ws = Workspace(tmp_path / "ws", server)
        ws.write("small", "x\n")
        ws.commit()
        ws.push()
        good = server.current_name()
        (ws.path / "big.bin").write_bytes(os.urandom(1_600_000))
        ws.commit()
        pushed = ws.push()
        assert pushed.done["result"] == "failed" and pushed.done["failed_step"] == "checkout"
        assert "disk full" in pushed.done["error"]
        assert server.current_name() == good and server.releases() == [good]
        assert not [n for n in os.listdir(server.root / "releases") if n.startswith(".")]
    finally:
        subprocess.run(["umount", str(mount)], check=False)
