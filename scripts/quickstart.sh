#!/bin/sh
# Install bridge and run its main job on the embedded local:// target: init a workspace,
# then check the target. Grows to init -> push -> exec as those commands land.
set -eu
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check .

demo=${BRIDGE_DEMO_DIR:-$(mktemp -d /tmp/bridge-demo.XXXXXX)}
mkdir -p "$demo"
cd "$demo"
printf 'print("hello from bridge")\n' > app.py
bridge init
bridge test
echo "demo workspace: $demo"
