"""bin/bridge, the installed command: sh picks the Python it was installed with, Python starts with -S.

Each test installs the launcher into a throwaway venv (made with --system-site-packages, so
bridge's dependencies come from this interpreter) and finds bridge through a plain path in a
.pth file, as a regular or compat-editable install does.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.conftest import REPO, Home

PURELIB = Path(sysconfig.get_paths()["purelib"]).relative_to(sys.prefix)


def make_venv(folder: Path, *, system_site: bool = True, bridge_path: bool = True) -> Path:
    """A venv holding bin/bridge; a .pth names the checkout when `bridge_path`. Returns the launcher."""
    flags = ["--system-site-packages"] if system_site else []
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", *flags, str(folder)], check=True)
    site_packages = folder / PURELIB
    if bridge_path:
        (site_packages / "bridge-checkout.pth").write_text(f"# the checkout, as pip install -e writes it\n{REPO}\n")
    launcher = folder / "bin" / "bridge"
    shutil.copy(REPO / "bin" / "bridge", launcher)
    return launcher


def env_without_pythonpath(home: Home, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in home.env.items() if k != "PYTHONPATH"}
    return {**env, **extra}


def test_launcher_runs_no_pth_hook_but_finds_bridge(home: Home, tmp_path: Path) -> None:
    launcher = make_venv(tmp_path / "venv")
    mark = tmp_path / "hook-ran"
    (tmp_path / "venv" / PURELIB / "zz_hook.pth").write_text(
        "import os; open(os.environ['BRIDGE_TEST_MARK'], 'w').close()\n")
    env = env_without_pythonpath(home, BRIDGE_TEST_MARK=str(mark))

    proc = subprocess.run([str(launcher), "--help"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Usage: bridge" in proc.stdout
    assert not mark.exists()

    # the same venv's python does run the hook: the assertion above can fail
    subprocess.run([str(tmp_path / "venv" / "bin" / "python3"), "-c", "pass"], check=True, env=env)
    assert mark.exists()


def test_launcher_keeps_every_argument_whole(home: Home, tmp_path: Path) -> None:
    launcher = make_venv(tmp_path / "venv")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    env = env_without_pythonpath(home)
    subprocess.run([str(launcher), "init"], cwd=workspace, check=True, capture_output=True, env=env)
    words = ["a b", "it's", '"q"', "$(touch pwned)", "; rm -rf x", "*", ""]

    proc = subprocess.run([str(launcher), "exec", "--", "printf", "[%s]\\n", *words], cwd=workspace,
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "".join(f"[{w}]\n" for w in words)
    assert not (workspace / "pwned").exists()

    code = subprocess.run([str(launcher), "exec", "--", "sh", "-c", "exit 42"], cwd=workspace, env=env)
    assert code.returncode == 42


def test_a_symlinked_launcher_uses_the_python_it_was_installed_with(home: Home, tmp_path: Path) -> None:
    """pipx links ~/.local/bin/bridge to the venv: the venv's python3 runs it, not the first on PATH."""
    launcher = make_venv(tmp_path / "venv")
    link = tmp_path / "local-bin" / "bridge"
    link.parent.mkdir()
    link.symlink_to(launcher)
    # /usr/bin/python3 (Debian's) has no typer: picking it instead would fail
    env = env_without_pythonpath(home, PATH="/usr/bin:/bin")

    proc = subprocess.run([str(link), "--help"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Usage: bridge" in proc.stdout


def test_no_bridge_for_that_python_is_one_line_and_a_hint(home: Home, tmp_path: Path) -> None:
    launcher = make_venv(tmp_path / "venv", system_site=False, bridge_path=False)

    proc = subprocess.run([str(launcher), "--help"], capture_output=True, text=True,
                          env=env_without_pythonpath(home), cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("bridge: error: No module named 'bridge'")
    assert "hint: install bridge for this Python" in proc.stderr

