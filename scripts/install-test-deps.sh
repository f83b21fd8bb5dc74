#!/bin/sh
# Install everything the test suite needs on a fresh Debian 12 machine (as root), then start dockerd
# and build the local sandbox image. Idempotent. README's test command runs this, then pytest.
set -eu
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
if ! command -v sshd >/dev/null 2>&1 && [ ! -x /usr/sbin/sshd ] || ! command -v dockerd >/dev/null 2>&1 \
   || ! command -v debootstrap >/dev/null 2>&1 || ! command -v autossh >/dev/null 2>&1 \
   || ! command -v iptables >/dev/null 2>&1 || ! command -v rsync >/dev/null 2>&1 \
   || ! command -v tinyproxy >/dev/null 2>&1 || ! command -v nginx >/dev/null 2>&1 \
   || [ ! -x /usr/bin/chromium ] \
   || ! /usr/bin/python3 -c "import ensurepip" 2>/dev/null; then
    apt-get update -qq
    apt-get install -y -qq openssh-server openssh-client git docker.io debootstrap iptables iproute2 \
        rsync autossh sudo procps psmisc python3-venv tinyproxy nginx chromium >/dev/null
fi
mkdir -p /run/sshd

sh scripts/install-test-python.sh
python3 scripts/vendor-xterm.py >/dev/null  # the web terminal's xterm.js, for the editable install

sh scripts/start-dockerd.sh >/dev/null
sh scripts/build-sandbox-image.sh
python3 -c 'from tests.systemd_server import build_image; build_image()'  # the systemd "server" of tests/apps
