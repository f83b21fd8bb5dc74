"""The one place that decides how an SSH connection's byte stream is opened: `open_stream()`.

Three kinds today, picked from the settings: a ProxyCommand from ~/.ssh/config (a socketpair
bridged to the command's stdin and stdout), a direct-tcpip channel through a jump host
(`via:` / ProxyJump), or a TCP socket with TCP_NODELAY and quick acks. A new transport (say, a
socket reached through a hub) plugs in here and nowhere else. Every stream remembers the first
bytes the peer sent (`first_bytes`), so a failed handshake can say what answered.
"""
from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

from bridge.errors import ConfigError, ConnectError

if TYPE_CHECKING:
    import subprocess
    import threading

    import paramiko

    from bridge.ssh.connection import Connection
    from bridge.ssh.settings import SSHSettings

QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only
FIRST_BYTES = 160  # enough of a peer's first words to name it (an HTTP status line, a banner)
PROXY_GRACE = 1.0  # seconds a ProxyCommand gets to exit after its socket closed, before SIGKILL


class _Recording(socket.socket):
    """A socket that keeps the first bytes the peer sent during the connection's first reads.

    `quick_reads` bounds the extra work to the handshake; the TCP subclass also acks at once then.
    """

    quick_reads = 256  # handshake, auth and a first command take well under 100 reads

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.first_bytes = b""

    def recv(self, size: int, flags: int = 0) -> bytes:
        if not self.quick_reads:
            return super().recv(size, flags)
        self.quick_reads -= 1
        self._early_read()
        data = super().recv(size, flags)
        if len(self.first_bytes) < FIRST_BYTES:
            self.first_bytes += data[:FIRST_BYTES - len(self.first_bytes)]
        return data

    def _early_read(self) -> None:
        """Hook before each of the first reads."""


class _QuickAckSocket(_Recording):
    """A TCP socket that acks at once while the connection starts: TCP_QUICKACK before each early read.

    sshd leaves Nagle on for exec sessions, so after authentication it holds the channel-open
    confirmation until its last small packets (host keys, key-option notices) are acked, and
    Linux delays that ack by 40 ms: the first command after a handshake took 52 ms, 9-15 ms with this.
    The flag does not stick, and setting it on every read of a bulk stream (a syscall and an ack
    per segment) cost a tunnel a quarter of its throughput, so only the first reads set it.
    """

    def _early_read(self) -> None:
        if QUICKACK is not None:
            self.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)


class _ProxySocket(_Recording):
    """Our end of the socketpair a ProxyCommand talks through; closing it ends the command, by its PID."""

    proc: "subprocess.Popen | None" = None
    command = ""
    stderr = b""  # the command's last words on stderr (a thread keeps the tail)
    reader: "threading.Thread | None" = None

    def watch_stderr(self, proc: "subprocess.Popen") -> None:
        """Read the command's stderr on a thread (it must never block on a full pipe); keep the last 4 KiB."""
        import threading

        def read() -> None:
            while chunk := os.read(proc.stderr.fileno(), 4096):  # type: ignore[union-attr]
                self.stderr = (self.stderr + chunk)[-4096:]
            proc.stderr.close()  # type: ignore[union-attr]

        self.reader = threading.Thread(target=read, daemon=True, name="proxy-stderr")
        self.reader.start()

    def end(self) -> None:
        """SIGTERM the command, SIGKILL it if it lingers; reap it either way."""
        import subprocess

        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(PROXY_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        super().close()
        self.end()


def open_stream(settings: "SSHSettings", via: "Connection | None") -> Any:
    """The byte stream to `settings`' sshd: a hub's agent, a ProxyCommand, a channel through `via`, or TCP.

    Raises ConnectError (cannot reach) or ConfigError (a ProxyCommand that cannot be expanded).
    """
    if settings.hub is not None:
        from bridge.ssh.hubsock import hub_socket

        return hub_socket(settings.hub, settings.connect_timeout)
    if via is not None:
        return _jump_channel(settings, via)
    if settings.proxy_command:
        return _proxy(settings)
    return _tcp(settings)


def first_bytes(stream: Any) -> bytes:
    """What the peer sent first on a stream made here (nothing known for a jump channel)."""
    return getattr(stream, "first_bytes", b"")


def proxy_failure(stream: Any) -> str:
    """`ProxyCommand `…` exited N: <its last stderr line>` when `stream` is a ProxyCommand's and the
    command failed (exited non-zero, so the connection failed because of it); '' otherwise."""
    import subprocess

    if not isinstance(stream, _ProxySocket) or stream.proc is None:
        return ""
    try:
        code = stream.proc.wait(PROXY_GRACE)  # a failing command exits on its own: give it time to say why
    except subprocess.TimeoutExpired:
        return ""  # still running: not what failed
    if code == 0:
        return ""
    if stream.reader is not None:
        stream.reader.join(PROXY_GRACE)  # its last words may still be in the pipe
    lines = stream.stderr.decode(errors="replace").strip().splitlines()
    return f"ProxyCommand `{stream.command}` exited {code}" + (f": {lines[-1]}" if lines else "")


def _tcp(settings: "SSHSettings") -> socket.socket:
    # An ASCII name goes to getaddrinfo as bytes: a str would be IDNA-encoded into the same bytes,
    # after importing encodings.idna, stringprep and unicodedata (~2.5 ms of a cold start).
    host = settings.hostname.encode() if settings.hostname.isascii() else settings.hostname
    try:
        # typeshed wants a str host; getaddrinfo takes bytes too (the reason above)
        sock = socket.create_connection((host, settings.port), timeout=settings.connect_timeout)  # type: ignore[arg-type]
    except socket.timeout as e:
        raise ConnectError(f"cannot connect to {settings.describe()}: timed out after "
                           f"{settings.connect_timeout:g}s") from e
    except OSError as e:
        raise ConnectError(f"cannot connect to {settings.describe()}: {e.strerror or e}") from e
    sock = _QuickAckSocket(sock.family, sock.type, sock.proto, sock.detach())
    sock.settimeout(settings.connect_timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _jump_channel(settings: "SSHSettings", via: "Connection") -> "paramiko.Channel":
    """A direct-tcpip channel through the jump host, like ssh -J."""
    jump = via.transport
    import paramiko

    try:
        return jump.open_channel("direct-tcpip", (settings.hostname, settings.port),
                                 ("127.0.0.1", 0), timeout=settings.connect_timeout)
    except (paramiko.SSHException, OSError, EOFError) as e:
        raise ConnectError(f"cannot reach {settings.describe()} through {via.settings.describe()}: "
                           f"{e or 'channel refused'}") from e


def _proxy(settings: "SSHSettings") -> _ProxySocket:
    """Run the ProxyCommand as OpenSSH does (`/bin/sh -c 'exec LINE'`, tokens expanded) on a socketpair.

    A socketpair rather than paramiko's ProxyCommand: paramiko splits the line itself (no shell,
    so pipes and quotes in it break) and reads through two pipes with a select loop; a socket
    gives the transport the same timeouts and reads as TCP.
    """
    import subprocess

    command = expand_proxy_command(settings.proxy_command or "", settings)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", f"exec {command}"], stdin=theirs.fileno(), stdout=theirs.fileno(),
                                stderr=subprocess.PIPE, start_new_session=True)
    except OSError as e:
        ours.close()
        raise ConnectError(f"{settings.describe()}: cannot start ProxyCommand `{command}`: {e.strerror or e}",
                           hint="check the ProxyCommand line in ~/.ssh/config") from e
    finally:
        theirs.close()
    sock = _ProxySocket(ours.family, ours.type, ours.proto, ours.detach())
    sock.proc, sock.command = proc, command
    sock.watch_stderr(proc)
    sock.settimeout(settings.connect_timeout)
    return sock


# OpenSSH's ProxyCommand tokens (ssh_config(5) TOKENS); a value from config or the URL is shell-quoted
# (a hostname from a committed bridge.yaml must not become shell syntax), which leaves a plain name as is.
def expand_proxy_command(line: str, settings: "SSHSettings") -> str:
    """`line` with %h %p %r %n %u %d %% replaced. Raises ConfigError naming an unknown token."""
    import getpass
    import shlex

    values = {"h": settings.hostname, "p": str(settings.port), "r": settings.user, "n": settings.host,
              "u": getpass.getuser(), "d": os.path.expanduser("~"), "%": "%"}
    out, rest = [], line
    while "%" in rest:
        before, _, rest = rest.partition("%")
        token, rest = rest[:1], rest[1:]
        if token not in values:
            raise ConfigError(f"~/.ssh/config: ProxyCommand `{line}`: unknown token %{token}",
                              hint="bridge expands %h %p %r %n %u %d and %%")
        out += [before, values[token] if token == "%" else shlex.quote(values[token])]
    return "".join(out) + rest
