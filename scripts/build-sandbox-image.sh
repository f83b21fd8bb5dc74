#!/bin/sh
# Build the sandbox image bridge-sandbox:bookworm locally (no registry is reachable here):
# a debootstrap minbase rootfs with python3, imported into docker. Idempotent: cached by tag.
# python3, not python3-minimal: the minimal package lacks json, subprocess and most of the stdlib.
set -eu

tag=${BRIDGE_SANDBOX_IMAGE:-bridge-sandbox:bookworm}

if docker image inspect "$tag" >/dev/null 2>&1; then
    exit 0
fi

# The Debian mirror apt already uses (deb822 "URIs:" or one-line "deb URL bookworm ...").
mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
    | awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}
           /^deb / && $0 ~ / bookworm / && $2 ~ /\/debian\/?$/ {print $2; exit}')
mirror=${mirror:-http://deb.debian.org/debian}

dir=$(mktemp -d /tmp/bridge-sandbox-rootfs.XXXXXX)
trap 'rm -rf "$dir"' EXIT

debootstrap --variant=minbase --include=python3 bookworm "$dir" "$mirror" >&2
rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*

# The sandbox runs as 65534:65534; base-passwd ships nobody/nogroup, make sure.
grep -q '^[^:]*:[^:]*:65534:' "$dir/etc/passwd" \
    || echo 'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin' >>"$dir/etc/passwd"
grep -q '^[^:]*:[^:]*:65534:' "$dir/etc/group" \
    || echo 'nogroup:x:65534:' >>"$dir/etc/group"

tar -C "$dir" -c . | docker import - "$tag" >&2
echo "built $tag"
