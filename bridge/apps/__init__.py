"""The deployed app on each server: its processes under systemd (ps, logs, restart) and its config."""
