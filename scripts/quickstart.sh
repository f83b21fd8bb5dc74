#!/bin/sh
# Install bridge and run its main job on the embedded local:// target, no server needed:
# init a workspace, commit an app, push (the target deploys it), exec in the deployed release.
#
# bridge goes into a venv of its own, linked onto PATH, as pipx does: a stock Debian 12 (or
# Ubuntu 24.04) python3 has no pip, and refuses `pip install` outside a venv (PEP 668,
# externally-managed-environment). As root: /opt/bridge/venv and /usr/local/bin/bridge; else
# ~/.local/share/bridge/venv and ~/.local/bin/bridge. The link keeps the launcher's fast start:
# bin/bridge resolves it and starts the venv's python3 with -S.
set -eu
cd "$(dirname "$0")/.."
checkout=$(pwd)

if [ "$(id -u)" -eq 0 ]; then
    venv=/opt/bridge/venv bindir=/usr/local/bin
else
    venv=${XDG_DATA_HOME:-$HOME/.local/share}/bridge/venv bindir=$HOME/.local/bin
fi

# What a stock Debian lacks: git, and python3's venv module (ensurepip comes with python3-venv).
missing=
command -v git >/dev/null 2>&1 || missing="$missing git"
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
python3 -c 'import ensurepip, venv' 2>/dev/null || missing="$missing python3-venv"
if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "quickstart: bridge needs$missing; install them: sudo apt-get install$missing" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

[ -x "$venv/bin/python3" ] || python3 -m venv "$venv"
"$venv/bin/python3" -m pip install -q --disable-pip-version-check "$checkout"
mkdir -p "$bindir"
ln -sf "$venv/bin/bridge" "$bindir/bridge"
bridge=$bindir/bridge
echo "installed $("$bridge" --version): $bridge -> $venv"
case ":$PATH:" in
    *":$bindir:"*) ;;
    *) echo "note: add $bindir to PATH to type plain \`bridge\`" ;;
esac

demo=${BRIDGE_DEMO_DIR:-$(mktemp -d /tmp/bridge-demo.XXXXXX)}
mkdir -p "$demo"
cd "$demo"
printf 'import sys\nprint("hello from bridge, python", sys.version.split()[0])\n' > app.py
"$bridge" init
git add -A
git -c user.name=bridge -c user.email=bridge@localhost commit -qm "demo app" || true
"$bridge" push
"$bridge" exec -- python3 app.py
"$bridge" status
echo "demo workspace: $demo"
