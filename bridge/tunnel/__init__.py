"""Reverse tunnel (DESIGN §6): keep `relay:PORT` forwarded back to local ports, healing after every outage.

`service.up()` yields events (Connecting, Connected, Disconnected, Retrying…) that the CLI renders;
`supervisor` owns the reconnect loop, `session` one SSH connection with its forwards and heartbeat,
`pipe` the bytes of each forwarded connection, `state` the file `status` and `down` read.
"""
