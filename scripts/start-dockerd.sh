#!/bin/sh
# Start dockerd in the background unless an engine already answers; print its PID.
# Idempotent: safe to run twice. Log: /var/log/dockerd.log (or /tmp if /var/log is not writable).
set -eu

if docker info >/dev/null 2>&1; then
    pidof dockerd || true
    exit 0
fi

log=/var/log/dockerd.log
touch "$log" 2>/dev/null || log=/tmp/dockerd.log

nohup dockerd >"$log" 2>&1 </dev/null &
pid=$!

i=0
until docker info >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -gt 300 ] || ! kill -0 "$pid" 2>/dev/null; then
        echo "dockerd did not become ready; see $log" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    sleep 0.1
done
echo "$pid"
