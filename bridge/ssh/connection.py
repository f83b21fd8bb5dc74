"""One SSH connection: the only place bridge creates a paramiko Transport.

Host keys are checked here, once, before any authentication, for exec, git traffic and
tunnels alike. The byte stream comes from stream.open_stream (TCP made by hand with TCP_NODELAY,
which paramiko never sets: Nagle costs ~40 ms per exec; a jump channel; or a ProxyCommand), and
AES-GCM is asked for first (throughput follows the cipher). The TCP connection is opened before
paramiko is imported, so sshd's per-connection start (fork, re-exec, host keys: ~15 ms) overlaps
the ~150 ms import. At most gate.SLOTS handshakes per server run at once, and one the server
drops before authentication (busy) is tried again, so a crowd of clients never loses runs to it.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from bridge.errors import AuthError, ConnectError
from bridge.ssh import hostkeys, stream
from bridge.ssh.gate import handshake_slot
from bridge.ssh.settings import SSHSettings, default_identities
from bridge.ssh.slim_import import slim_paramiko_import

if TYPE_CHECKING:
    from collections.abc import Sequence

    import paramiko

FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")
FAST_KEX = ("curve25519-sha256@libssh.org", "mlkem768x25519-sha256", "ecdh-sha2-nistp256")
# Measured on loopback (200 MB of stdout): paramiko's defaults (2 MiB window, 32 KiB packets) gave
# 216-250 MB/s, an 8 MiB window with 512 KiB packets 328-345 MB/s; OpenSSH sends packets as large
# as we advertise, so fewer, bigger packets cross paramiko's per-packet Python overhead.
WINDOW_SIZE = 8 << 20
MAX_PACKET_SIZE = 512 << 10
ATTEMPTS = 6  # a handshake the server dropped before auth (busy: MaxStartups) is tried this often
BUSY_HINT = ("the server dropped the connection before authentication, as a busy sshd does beyond its "
             "MaxStartups; try again later, or ask its admin to raise MaxStartups")


class HandshakeDropped(ConnectError):
    """The server closed the connection before authentication without a reason: busy, so worth a retry."""

    default_hint = BUSY_HINT


class Connection:
    """A lazily opened, host-key-checked SSH connection; a context manager."""

    def __init__(self, settings: SSHSettings, *, trust_hint: str = "bridge test --trust TARGET",
                 opener: "Callable[[], Any] | None" = None) -> None:
        self.settings = settings
        self.trust_hint = trust_hint
        self.opener = opener  # makes the byte stream itself (the hub's own runs on an agent); else stream.py
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
                self._transport = self._establish()
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

    def exec_channel(self, command: str | None, *, pty: bool = False, term_size: tuple[int, int] = (80, 24),
                     timeout: float | None = None, window_size: int | None = None) -> "paramiko.Channel":
        """Open a session channel running `command` (already quoted by the caller), or the login shell for None.

        `window_size` overrides the connection's WINDOW_SIZE for this channel: what the server may send
        before we read it (a web terminal keeps it small, so a flood's backlog behind a Ctrl-C stays short).

        None sends a shell request, not an exec: what a restricted key's `bridge guard` takes as an
        interactive login (it refuses a computed `exec "$SHELL"` command line).
        """
        transport = self.transport  # connects before importing paramiko (see the module docstring)
        import paramiko

        try:
            channel = transport.open_session(timeout=timeout or self.settings.connect_timeout, window_size=window_size)
            if pty:
                channel.get_pty(term="xterm-256color", width=term_size[0], height=term_size[1])
            if command is None:
                channel.invoke_shell()
            else:
                channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise ConnectError(f"{self.settings.describe()}: cannot start a command: {e or type(e).__name__}",
                               hint="the connection dropped; run again") from e
        return channel

    # -- steps of open() -------------------------------------------------------------------------

    def _establish(self) -> "paramiko.Transport":
        """Handshake, host key, auth, holding a handshake slot (gate.py); a drop before auth is retried
        with capped, jittered backoff (a fleet of clients must not come back in lockstep)."""
        retries = 0
        while True:
            try:
                with handshake_slot(self.settings.hostname, self.settings.port, self.settings.connect_timeout):
                    return self._authenticated(self._handshake(self._stream()))
            except HandshakeDropped:
                if retries == ATTEMPTS - 1:
                    raise
            self.close()
            time.sleep(_retry_delay(retries))
            retries += 1

    def _authenticated(self, transport: "paramiko.Transport") -> "paramiko.Transport":
        try:
            self._verify_host_key(transport)
            self._authenticate(transport)
        except BaseException:
            transport.close()
            raise
        return transport

    def _stream(self) -> Any:
        """The byte stream to the server (stream.open_stream decides how); a jump host is connected first."""
        if self.opener is not None:
            return self.opener()
        if self.settings.via is not None and self._via is None:
            self._via = Connection(self.settings.via, trust_hint=self.trust_hint)
        return stream.open_stream(self.settings, self._via)

    def _handshake(self, sock: Any) -> "paramiko.Transport":
        """Banner and key exchange, bounded by connect_timeout; a failure says what the peer sent."""
        slim_paramiko_import()
        import paramiko

        _quiet_library_log()
        transport = paramiko.Transport(sock, default_window_size=WINDOW_SIZE,
                                       default_max_packet_size=MAX_PACKET_SIZE)
        timeout = self.settings.connect_timeout
        transport.banner_timeout = transport.handshake_timeout = timeout  # paramiko's own: 15 s each
        options = transport.get_security_options()
        options.ciphers = _prefer(options.ciphers, FAST_CIPHERS)
        options.kex = _prefer(options.kex, FAST_KEX)
        known_types = hostkeys.preferred_key_types(self.settings.known_hosts_name)
        options.key_types = _prefer(options.key_types, _with_rsa_sha2(known_types))
        try:
            transport.start_client(timeout=timeout)
        except (paramiko.SSHException, OSError, EOFError) as e:
            error = self._handshake_error(sock, e)  # before close(): that ends a ProxyCommand, masking its exit
            transport.close()
            raise error from e
        if not (transport.is_active() and transport.initial_kex_done):  # start_client returns at its timeout
            error = self._handshake_error(sock, None)
            transport.close()
            raise error
        return transport

    def _handshake_error(self, sock: Any, error: BaseException | None) -> ConnectError:
        """One line saying what happened and what the peer sent; HandshakeDropped when a retry may work."""
        where, sent = self.settings.describe(), stream.first_bytes(sock)
        proxy = stream.proxy_failure(sock)
        if proxy:
            return ConnectError(f"{where}: {proxy}", hint="check the ProxyCommand line in ~/.ssh/config")
        if sent.startswith(b"Exceeded MaxStartups"):  # what OpenSSH's listener says as it drops us (busy)
            return HandshakeDropped(f"{where}: the server is busy: it said {_printable(sent)}")
        if sent and not _speaks_ssh(sent):
            return ConnectError(f"{where}: not an SSH server: it sent {_printable(sent)}",
                                hint="check the port (and Port/HostName in ~/.ssh/config): is sshd listening there?")
        if error is None or _caused_by(error, TimeoutError):
            said = f"sent only {_printable(sent)}" if sent else "sent nothing"
            return ConnectError(f"{where}: no SSH handshake within {self.settings.connect_timeout:g}s: the peer "
                                f"accepted the connection and {said}",
                                hint="is sshd listening on that port, and not stalled? (connect_timeout sets the wait)")
        if _caused_by(error, EOFError, ConnectionError):
            stage = f"after its greeting {_printable(sent)}" if sent else "before its SSH greeting"
            return HandshakeDropped(f"{where}: the server closed the connection {stage}")
        return ConnectError(f"{where}: SSH handshake failed: {error or type(error).__name__}",
                            hint="is an SSH server listening on that port?")

    def _verify_host_key(self, transport: "paramiko.Transport") -> None:
        """_handshake made sure key exchange finished, so the server's key is there to check."""
        key = transport.get_remote_server_key()
        hostkeys.verify(self.settings.known_hosts_name, key.get_name(), key.asbytes(), self.trust_hint)

    def _authenticate(self, transport: "paramiko.Transport") -> None:
        user = self.settings.user
        for key in _candidate_keys(self.settings):
            try:
                transport.auth_publickey(user, key)
            except Exception:  # paramiko raises AuthenticationException or SSHException per key
                if not transport.is_active():  # not a refusal: the server hung up (busy, or sshd went away)
                    raise HandshakeDropped(f"{self.settings.describe()}: the server closed the connection "
                                           "during authentication") from None
                continue
            if transport.is_authenticated():
                return
        raise AuthError(f"{self.settings.describe()}: permission denied (publickey)",
                        hint=_auth_hint(self.settings))


def _prefer(available: Sequence[str], first: Sequence[str]) -> tuple[str, ...]:
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
    try:
        transport = conn._handshake(conn._stream())
        key = transport.get_remote_server_key()
        transport.close()
        return settings.known_hosts_name, key.get_name(), key.asbytes()
    finally:
        conn.close()


def _retry_delay(retries: int) -> float:
    """0.1 s, 0.2, 0.4 … up to 2 s, jittered; imported only on a retry (a first try never loads `random`)."""
    from bridge.backoff import Backoff

    return Backoff(cap=2.0, base=0.1, failures=retries).next()


def _speaks_ssh(sent: bytes) -> bool:
    """RFC 4253 §4.2: the version line starts with `SSH-`; a server may send other lines before it."""
    return any(line.startswith(b"SSH-") for line in sent.split(b"\n"))


_ESCAPES = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}


def _printable(sent: bytes) -> str:
    """The peer's first bytes, quoted, control characters escaped, cut short: safe for one line."""
    text = "".join(c if " " <= c <= "~" else _ESCAPES.get(c, f"\\x{ord(c):02x}") for c in sent[:60].decode("latin-1"))
    return f"\"{text}\"" + ("…" if len(sent) > 60 else "")


def _caused_by(error: BaseException, *kinds: type) -> bool:
    """`error` or the exception it was raised from or during is one of `kinds` (paramiko wraps them)."""
    return any(isinstance(e, kinds) for e in (error, error.__cause__, error.__context__))


def _quiet_library_log() -> None:
    """paramiko logs a failed handshake's stack trace at ERROR (and "Success for unrequested channel!" at
    WARNING); with no handler set, Python's last-resort handler printed them on our stderr. bridge
    reports each failure itself, in one line."""
    import logging  # already loaded by paramiko

    logger = logging.getLogger("paramiko")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
