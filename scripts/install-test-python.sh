#!/bin/sh
# Make `python3 -m pytest` (README's test command) able to run the suite: pip for this machine's
# python3, then this checkout (editable) with its test extras. install-test-deps.sh runs it.
#
# The suite runs with the machine's own python3, so the test needs go into that interpreter. On a
# stock Debian 12 that python3 has no pip (python3-pip adds it) and refuses installs outside a
# venv (PEP 668). This script is for a dedicated test machine, as root, so there, and only when
# the interpreter says it is externally managed, it passes --break-system-packages: Debian's pip
# then writes to /usr/local/lib/python3.*/dist-packages, beside (not over) apt's packages.
# A user installing bridge itself never does this: scripts/quickstart.sh uses a venv.
set -eu
cd "$(dirname "$0")/.."

if ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
fi
managed=
if python3 -c 'import os, sys, sysconfig
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if sys.prefix == sys.base_prefix and os.path.isfile(marker) else 1)'; then
    managed=--break-system-packages
fi
python3 -m pip install -q --disable-pip-version-check $managed -e '.[test]'
