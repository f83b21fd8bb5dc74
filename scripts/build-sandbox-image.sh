#!/bin/sh
# Build the sandbox image bridge-sandbox:bookworm locally: a minbase rootfs with python3.
# python3, not python3-minimal: the minimal package lacks json, subprocess and most of the stdlib.
set -eu
exec sh "$(dirname "$0")/build-image.sh" "${BRIDGE_SANDBOX_IMAGE:-bridge-sandbox:bookworm}" python3
