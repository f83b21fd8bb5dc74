#!/bin/sh
# Build a local Docker image from a Debian 12 debootstrap rootfs (no image registry is reachable):
#   sh scripts/build-image.sh TAG [PACKAGES]     PACKAGES: comma-separated, added to minbase
# Idempotent: cached by tag. The sandbox image, the stock-Debian and the systemd "server" images
# of the tests are all built here.
set -eu

tag=$1
packages=${2:-}

if docker image inspect "$tag" >/dev/null 2>&1; then
    exit 0
fi

# The Debian mirror apt already uses (deb822 "URIs:" or one-line "deb URL bookworm ...").
mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
    | awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}
           /^deb / && $0 ~ / bookworm / && $2 ~ /\/debian\/?$/ {print $2; exit}')
mirror=${mirror:-http://deb.debian.org/debian}

dir=$(mktemp -d /tmp/bridge-image-rootfs.XXXXXX)
trap 'rm -rf "$dir"' EXIT

debootstrap --variant=minbase ${packages:+--include="$packages"} bookworm "$dir" "$mirror" >&2
rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*

# Sandboxes run as 65534:65534; base-passwd ships nobody/nogroup, make sure.
grep -q '^[^:]*:[^:]*:65534:' "$dir/etc/passwd" \
    || echo 'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin' >>"$dir/etc/passwd"
grep -q '^[^:]*:[^:]*:65534:' "$dir/etc/group" \
    || echo 'nogroup:x:65534:' >>"$dir/etc/group"

tar -C "$dir" -c . | docker import - "$tag" >&2
echo "built $tag"
