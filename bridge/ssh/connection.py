"""One SSH connection: the only place bridge creates a paramiko Transport.

Host keys are checked here, once, before any authentication, for exec, git traffic and
tunnels alike. The socket is made by hand with TCP_NODELAY (paramiko never sets it; Nagle
costs ~40 ms per exec) and quick acks (below), and AES-GCM is asked for first (throughput
follows the cipher). The TCP connection is opened before paramiko is imported, so sshd's
per-connection start (fork, re-exec, host keys: ~15 ms) overlaps the ~150 ms import.
"""
from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from bridge.errors import AuthError, ConnectError
from bridge.ssh import hostkeys
from bridge.ssh.settings import SSHSettings, default_identities
from bridge.ssh.slim_import import slim_paramiko_import

if TYPE_CHECKING:
    import paramiko

FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")
FAST_KEX = ("curve25519-sha256@libssh.org", "mlkem768x25519-sha256", "ecdh-sha2-nistp256")
# Measured on loopback (200 MB of stdout): paramiko's defaults (2 MiB window, 32 KiB packets) gave
# 216-250 MB/s, an 8 MiB window with 512 KiB packets 328-345 MB/s; OpenSSH sends packets as large
# as we advertise, so fewer, bigger packets cross paramiko's per-packet Python overhead.
WINDOW_SIZE = 8 << 20
MAX_PACKET_SIZE = 512 << 10
QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class _QuickAckSocket(socket.socket):
    """A TCP socket that acks at once while the connection starts: TCP_QUICKACK before each early read.

    sshd leaves Nagle on for exec sessions, so after authentication it holds the channel-open
    confirmation until its last small packets (host keys, key-option notices) are acked, and
    Linux delays that ack by 40 ms: the first command after a handshake took 52 ms, 9-15 ms with this.
    The flag does not stick, and setting it on every read of a bulk stream (a syscall and an ack
    per segment) cost a tunnel a quarter of its throughput, so only the first reads set it.
    """

    quick_reads = 256  # handshake, auth and a first command take well under 100 reads

    def recv(self, size: int, flags: int = 0) -> bytes:
        if self.quick_reads:
            self.quick_reads -= 1
            self.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
        return super().recv(size, flags)


class Connection:
    """A lazily opened, host-key-checked SSH connection; a context manager."""

    def __init__(self, settings: SSHSettings, *, trust_hint: str = "bridge test --trust TARGET",
                 opener: "Callable[[], socket.socket] | None" = None) -> None:
        self.settings = settings
        self.trust_hint = trust_hint
        self.opener = opener  # makes the byte stream itself (the hub's own runs on an agent); else _socket dials
        self._transport: paramiko.Transport | None = None
        self._via: Connection | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> "Connection":
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def transport(self) -> "paramiko.Transport":
        """The open, authenticated transport (opened on first use)."""
        return self.open()._transport  # type: ignore[return-value]

    @property
    def is_open(self) -> bool:
        return self._transport is not None and self._transport.is_active()

    def open(self) -> "Connection":
        """Connect, verify the host key, authenticate. Raises ConnectError, HostKeyError or AuthError."""
        with self._lock:
            if not self.is_open:
                self._transport = self._handshake(self._socket())
                self._verify_host_key(self._transport)
                self._authenticate(self._transport)
                if self.settings.keepalive:
                    self._transport.set_keepalive(int(self.settings.keepalive))
        return self

    def close(self) -> None:
        """Close this connection and the jump connections under it."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._via is not None:
            self._via.close()
            self._via = None

    def exec_channel(self, command: str, *, pty: bool = False, term_size: tuple[int, int] = (80, 24),
                     timeout: float | None = None) -> "paramiko.Channel":
        """Open a session channel running `command` (already quoted by the caller)."""
        transport = self.transport  # connects before importing paramiko (see the module docstring)
        import paramiko

        try:
            channel = transport.open_session(timeout=timeout or self.settings.connect_timeout)
            if pty:
                channel.get_pty(term="xterm-256color", width=term_size[0], height=term_size[1])
            channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise ConnectError(f"{self.settings.describe()}: cannot start a command: {e or type(e).__name__}",
                               hint="the connection dropped; run again") from e
        return channel

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float | None = None) -> tuple[int, bytes, bytes]:
        """Run `command` to completion and return (exit code, stdout, stderr). For short control commands."""
        from bridge.ssh.pump import collect

        channel = self.exec_channel(command)
        return collect(channel, stdin=stdin, timeout=timeout)

    # -- steps of open() -------------------------------------------------------------------------

    def _socket(self) -> socket.socket | "paramiko.Channel":
        settings = self.settings
        if self.opener is not None:
            return self.opener()
        if settings.hub is not None:
            from bridge.ssh.hubsock import hub_socket

            return hub_socket(settings.hub, settings.connect_timeout)
        if settings.via is not None:
            return self._tunnel_socket(settings)
        # An ASCII name goes to getaddrinfo as bytes: a str would be IDNA-encoded into the same bytes,
        # after importing encodings.idna, stringprep and unicodedata (~2.5 ms of a cold start).
        host = settings.hostname.encode() if settings.hostname.isascii() else settings.hostname
        try:
            sock = socket.create_connection((host, settings.port), timeout=settings.connect_timeout)
        except socket.timeout as e:
            raise ConnectError(f"cannot connect to {settings.describe()}: timed out after "
                               f"{settings.connect_timeout:g}s") from e
        except OSError as e:
            raise ConnectError(f"cannot connect to {settings.describe()}: {e.strerror or e}") from e
        if QUICKACK is not None:
            sock = _QuickAckSocket(sock.family, sock.type, sock.proto, sock.detach())
            sock.settimeout(settings.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _tunnel_socket(self, settings: SSHSettings) -> "paramiko.Channel":
        """A direct-tcpip channel through the jump host, like ssh -J."""
        self._via = Connection(settings.via, trust_hint=self.trust_hint)  # type: ignore[arg-type]
        jump = self._via.transport
        import paramiko

        try:
            return jump.open_channel("direct-tcpip", (settings.hostname, settings.port),
                                     ("127.0.0.1", 0), timeout=settings.connect_timeout)
        except (paramiko.SSHException, OSError) as e:
            raise ConnectError(f"cannot reach {settings.describe()} through {settings.via.describe()}: "
                               f"{e or 'channel refused'}") from e

    def _handshake(self, sock: Any) -> "paramiko.Transport":
        slim_paramiko_import()
        import paramiko

        transport = paramiko.Transport(sock, default_window_size=WINDOW_SIZE,
                                       default_max_packet_size=MAX_PACKET_SIZE)
        options = transport.get_security_options()
        options.ciphers = _prefer(options.ciphers, FAST_CIPHERS)
        options.kex = _prefer(options.kex, FAST_KEX)
        known_types = hostkeys.preferred_key_types(self.settings.known_hosts_name)
        options.key_types = _prefer(options.key_types, _with_rsa_sha2(known_types))
        try:
            transport.start_client(timeout=self.settings.connect_timeout)
        except (paramiko.SSHException, OSError, EOFError) as e:
            transport.close()
            raise ConnectError(f"{self.settings.describe()}: SSH handshake failed: {e or type(e).__name__}",
                               hint="is an SSH server listening on that port?") from e
        return transport

    def _verify_host_key(self, transport: "paramiko.Transport") -> None:
        key = transport.get_remote_server_key()
        try:
            hostkeys.verify(self.settings.known_hosts_name, key.get_name(), key.asbytes(),
                            self.trust_hint)
        except Exception:
            transport.close()
            raise

    def _authenticate(self, transport: "paramiko.Transport") -> None:
        user = self.settings.user
        for key in _candidate_keys(self.settings):
            try:
                transport.auth_publickey(user, key)
            except Exception:  # paramiko raises AuthenticationException or SSHException per key
                continue
            if transport.is_authenticated():
                return
        transport.close()
        raise AuthError(f"{self.settings.describe()}: permission denied (publickey)",
                        hint=_auth_hint(self.settings))


def _prefer(available: tuple[str, ...], first: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Reorder `available` so the `first` entries it supports lead."""
    lead = [name for name in first if name in available]
    return tuple(lead + [name for name in available if name not in lead])


def _with_rsa_sha2(key_types: list[str]) -> list[str]:
    """known_hosts says `ssh-rsa`; the algorithms that check such a key are the rsa-sha2 ones."""
    out: list[str] = []
    for key_type in key_types:
        out.extend(["rsa-sha2-512", "rsa-sha2-256"] if key_type == "ssh-rsa" else [key_type])
    return out


def _candidate_keys(settings: SSHSettings) -> list[Any]:
    """Keys to offer, in OpenSSH's spirit: configured files, then the agent, then the default files."""
    keys = [k for k in (_load_key(p) for p in settings.identities) if k is not None]
    keys.extend(_agent_keys())
    if not settings.explicit_identity:
        keys.extend(k for k in (_load_key(p) for p in default_identities()) if k is not None)
    return keys


def _load_key(path: Path) -> Any:
    import paramiko

    if not path.is_file():
        return None
    try:
        return paramiko.PKey.from_path(str(path))
    except (paramiko.SSHException, OSError, ValueError):
        return None  # encrypted or unreadable: the agent may still hold it


def _agent_keys() -> list[Any]:
    import os

    if not os.environ.get("SSH_AUTH_SOCK"):
        return []
    import paramiko

    try:
        return list(paramiko.Agent().get_keys())
    except (paramiko.SSHException, OSError):
        return []


def _auth_hint(settings: SSHSettings) -> str:
    offered = ", ".join(str(p) for p in settings.identities) or "the ssh-agent and ~/.ssh/id_*"
    return (f"tried {offered}; set `identity:` for this remote in bridge.yaml, or add your public key to "
            f"~{settings.user}/.ssh/authorized_keys on {settings.host}")


def probe_host_key(settings: SSHSettings) -> tuple[str, str, bytes]:
    """Handshake without authenticating and return (known_hosts name, key type, key blob), for `--trust`."""
    conn = Connection(settings)
    transport = conn._handshake(conn._socket())
    try:
        key = transport.get_remote_server_key()
        return settings.known_hosts_name, key.get_name(), key.asbytes()
    finally:
        transport.close()
        conn.close()
