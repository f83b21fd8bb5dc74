"""The agent: runs on a server, dials the hub over wss, and hands each stream the hub opens to the local sshd."""
