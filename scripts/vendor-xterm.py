#!/usr/bin/env python3
"""Vendor xterm.js and its fit addon into bridge/hub/web/vendor/ from the npm registry (stdlib only).

The web terminal serves these files itself (no CDN). Versions and their sha512 integrity are pinned
here; the registry's `dist.integrity` must agree with the pin, and the tarball must match it, or
nothing is written. The build (setup.py) and scripts/install-test-deps.sh run this; the files are
not in git. Usage: python3 scripts/vendor-xterm.py [DEST]
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import sys
import tarfile
import urllib.request
from pathlib import Path

REGISTRY = "https://registry.npmjs.org/"
# package -> (version, dist.integrity, {file in the tarball: name in vendor/})
PINS = {
    "@xterm/xterm": ("5.5.0", "sha512-hqJHYaQb5OptNunnyAnkHyM8aCjZ1MEIDTQu1iIbbTD/xops91NB5yq1ZK/dC2JDbVWtF23zUtl9JE2NqwT87A==",
                     {"package/lib/xterm.js": "xterm.js", "package/css/xterm.css": "xterm.css"}),
    "@xterm/addon-fit": ("0.10.0", "sha512-UFYkDm4HUahf2lnEyHvio51TNGiLK66mqP2JoATy7hRZeXaGMRDr00JiSF7m63vR5WKATF605yEggJKsw0JpMQ==",
                         {"package/lib/addon-fit.js": "addon-fit.js"}),
}
DEFAULT_DEST = Path(__file__).resolve().parent.parent / "bridge" / "hub" / "web" / "vendor"


class VendorError(Exception):
    """The registry could not be read, or what it sent does not match the pin."""


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read()
    except OSError as e:
        raise VendorError(f"cannot fetch {url}: {e}") from e


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def fetch(package: str, version: str, integrity: str) -> bytes:
    """The package's tarball, checked against the pinned integrity and the registry's own."""
    meta = json.loads(_get(f"{REGISTRY}{package}/{version}"))
    listed = meta.get("dist", {}).get("integrity")
    if listed != integrity:
        raise VendorError(f"{package}@{version}: the registry lists integrity {listed}, pinned {integrity}")
    tarball = _get(meta["dist"]["tarball"])
    if _integrity(tarball) != integrity:
        raise VendorError(f"{package}@{version}: the tarball does not match its integrity {integrity}")
    return tarball


def extract(tarball: bytes, files: dict[str, str]) -> dict[str, bytes]:
    """The wanted members' bytes; raises VendorError when one is missing."""
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        found = {}
        for member, name in files.items():
            handle = archive.extractfile(member) if member in archive.getnames() else None
            if handle is None:
                raise VendorError(f"{member} is not in the tarball")
            found[name] = handle.read()
    return found


def vendor(dest: Path) -> list[Path]:
    """Fetch, verify and write every pinned file into `dest` (all or nothing); returns the paths written."""
    contents: dict[str, bytes] = {}
    for package, (version, integrity, files) in PINS.items():
        contents.update(extract(fetch(package, version, integrity), files))
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in contents.items():
        partial = dest / f".{name}.part"
        partial.write_bytes(data)
        os.replace(partial, dest / name)
        written.append(dest / name)
    return written


def vendored(dest: Path = DEFAULT_DEST) -> bool:
    """True when every pinned file is already in `dest`."""
    return all((dest / name).is_file() for _, _, files in PINS.values() for name in files.values())


def main() -> int:
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DEST
    try:
        for path in vendor(dest):
            print(f"vendored {path}")
    except VendorError as e:
        print(f"vendor-xterm: {e}; check that {REGISTRY} is reachable (or an https_proxy), then run again",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
