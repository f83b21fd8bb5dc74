"""README's first command, and the suite's own install step, on a stock Debian 12 (PEP 668, no pip).

Each test runs a container of a debootstrap rootfs (scripts/build-image.sh, cached by tag) with
this checkout copied in. The container reaches Debian's mirror and PyPI as a user's machine
does, once it trusts this machine's CA bundle (mounted read-only at the same path); the host's
pip settings (local wheel folders, constraints) are not in it.
"""
from __future__ import annotations

import secrets
import subprocess

import pytest

from tests.conftest import REPO

# minbase plus ca-certificates (in every standard Debian 12 install): no python3, no pip, no git
STOCK_IMAGE = "bridge-stock:bookworm"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
COPY_CHECKOUT = ("mkdir /root/bridge && tar -C /src --exclude=.git --exclude=build --exclude='*.egg-info' -c . "
                 "| tar -C /root/bridge -x && cd /root/bridge")
# The command line of the bridge process that runs the probe on `local`: the probe's $PPID
LAUNCHED_AS = r'''launched=$(bridge exec -- 'tr "\0" " " </proc/$PPID/cmdline') && echo "launched: $launched"'''


@pytest.fixture(scope="module")
def stock_image() -> str:
    subprocess.run(["sh", str(REPO / "scripts" / "build-image.sh"), STOCK_IMAGE, "ca-certificates"],
                   check=True, capture_output=True)
    return STOCK_IMAGE


def in_stock_debian(image: str, script: str) -> subprocess.CompletedProcess:
    """Run sh `script` as root in a fresh container of `image`, the checkout at the cwd; always removed."""
    name = f"bridge-quickstart-{secrets.token_hex(4)}"
    command = ["docker", "run", "--rm", "--name", name, "-v", f"{REPO}:/src:ro", "-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro",
               image, "sh", "-ec", f"{COPY_CHECKOUT}\n{script}"]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=1200)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


@pytest.mark.slow
def test_quickstart_installs_into_its_own_venv_and_runs_the_main_loop(stock_image: str) -> None:
    run = in_stock_debian(stock_image, "\n".join([
        "! command -v python3 || exit 99",  # stock: the script must bring what it needs (`!` alone escapes -e)
        "BRIDGE_DEMO_DIR=/root/demo sh scripts/quickstart.sh",
        "test -f /usr/lib/python3.11/EXTERNALLY-MANAGED",  # the system python3 refuses pip installs
        "cd /root/demo",
        LAUNCHED_AS,
    ]))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "installed bridge " in run.stdout and "/usr/local/bin/bridge -> /opt/bridge/venv" in run.stdout
    assert "hello from bridge, python 3.11" in run.stdout, run.stdout
    assert "deploy ok" in run.stdout, run.stdout
    # the link on PATH still starts the venv's python3 with -S (bin/bridge's fast start)
    assert "launched: /opt/bridge/venv/bin/python3 -S /opt/bridge/venv/bin/bridge exec -- " in run.stdout, run.stdout


@pytest.mark.slow
def test_install_test_python_makes_readmes_pytest_command_work(stock_image: str) -> None:
    run = in_stock_debian(stock_image, "\n".join([
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 git >/dev/null",
        "! python3 -m pip --version || exit 99",
        "sh scripts/install-test-python.sh",
        "python3 -m pytest -q -p no:cacheprovider tests/test_targets.py",
    ]))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " passed" in run.stdout and "failed" not in run.stdout, run.stdout

