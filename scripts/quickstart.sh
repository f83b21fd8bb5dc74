#!/bin/sh
# Install bridge and run its main job on the embedded local:// target, no server needed:
# init a workspace, commit an app, push (the target deploys it), exec in the deployed release.
set -eu
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check .
command -v git >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq git >/dev/null; }

demo=${BRIDGE_DEMO_DIR:-$(mktemp -d /tmp/bridge-demo.XXXXXX)}
mkdir -p "$demo"
cd "$demo"
printf 'import sys\nprint("hello from bridge, python", sys.version.split()[0])\n' > app.py
bridge init
git add -A
git -c user.name=bridge -c user.email=bridge@localhost commit -qm "demo app" || true
bridge push
bridge exec -- python3 app.py
bridge status
echo "demo workspace: $demo"
