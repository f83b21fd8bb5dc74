"""A small Docker Engine API client over a unix socket, stdlib only.

Why not the Docker SDK: `import docker` costs ~370 ms here (it pulls in requests and
paramiko), more than a whole pooled sandbox run; the dozen calls the sandbox needs are
plain HTTP. Every request opens its own connection, so an Engine is thread-safe and
works the same over a socket forwarded through SSH (see forward.py).
Reference: https://docs.docker.com/engine/api/v1.41/
"""
from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from bridge.errors import SandboxError

API = "/v1.41"  # Docker 20.10+; newer engines accept older API versions
DEFAULT_URL = "unix:///var/run/docker.sock"
FOREVER = 0.0  # a request timeout meaning "no timeout" (waiting on a command without a deadline)
START_HINT = "start the Docker engine: run scripts/start-dockerd.sh (or `systemctl start docker`)"


class EngineError(SandboxError):
    """The engine answered a request with an error status."""

    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        super().__init__(f"docker engine: {message} (HTTP {status})", hint)
        self.status = status


@dataclass(frozen=True)
class Response:
    """Status line and body of one engine reply."""

    status: int
    body: bytes

    def json(self) -> Any:  # the Engine API's JSON: shapes vary per endpoint
        """The body decoded as JSON (None when empty)."""
        return json.loads(self.body) if self.body else None


class Engine:
    """One Docker engine, addressed by a `unix://` base URL; `hint` says how to fix an unreachable one."""

    def __init__(self, base_url: str = DEFAULT_URL, timeout: float = 30.0, hint: str = START_HINT) -> None:
        if not base_url.startswith("unix://"):
            raise SandboxError(f"unsupported docker base_url {base_url!r}", "use unix:///path/to/docker.sock")
        self.base_url = base_url
        self.path = base_url[len("unix://"):]
        self.timeout = timeout
        self.hint = hint

    def open(self, timeout: float | None = None) -> socket.socket:
        """A fresh connection to the engine's socket; raises SandboxError when nobody listens.

        `timeout` None means the engine's default; FOREVER (0) means block as long as it takes.
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout if timeout is None else (timeout or None))
        try:
            sock.connect(self.path)
        except OSError as e:
            sock.close()
            raise SandboxError(f"cannot reach the docker engine at {self.base_url}: {e.strerror or e}",
                               self.hint) from e
        return sock

    def request(self, method: str, path: str, body: object = None, query: dict | None = None,
                timeout: float | None = None) -> Response:
        """One API call; raises EngineError on a 4xx/5xx answer."""
        sock = self.open(timeout)
        try:
            _send(sock, method, _url(path, query), body, {"Connection": "close"})
            status, headers, rest = _read_head(sock)
            data = _read_body(sock, headers, rest)
        except socket.timeout as e:
            raise SandboxError(f"docker engine did not answer {method} {path} in time", self.hint) from e
        except (OSError, EOFError) as e:
            raise self._dropped(e) from e
        finally:
            sock.close()
        if status >= 400:
            raise EngineError(status, _error_message(data))
        return Response(status, data)

    def hijack(self, path: str, query: dict | None = None) -> tuple[socket.socket, bytes]:
        """Upgrade a request to a raw stream (attach); returns the socket and bytes read past the head."""
        sock = self.open()
        try:
            _send(sock, "POST", _url(path, query), None, {"Connection": "Upgrade", "Upgrade": "tcp"})
            status, headers, rest = _read_head(sock)
            if status >= 400:
                raise EngineError(status, _error_message(_read_body(sock, headers, rest)))
        except (OSError, EOFError) as e:
            sock.close()
            raise self._dropped(e) from e
        except BaseException:
            sock.close()
            raise
        return sock, rest

    def _dropped(self, error: OSError | EOFError) -> SandboxError:
        """The engine (or the forward to a server's engine) hung up mid-request: reset, or EOF before a reply."""
        reason = getattr(error, "strerror", None) or "no reply"
        return SandboxError(f"the docker engine at {self.base_url} hung up: {reason}", self.hint)

    def ping(self) -> None:
        """Raise SandboxError unless the engine answers."""
        self.request("GET", "/_ping")


def connect_engine(base_url: str = DEFAULT_URL) -> Engine:
    """The engine at `base_url` (the local socket, or one forwarded over SSH), checked with a ping."""
    engine = Engine(base_url)
    engine.ping()
    return engine


def _url(path: str, query: dict | None) -> str:
    return API + path + ("?" + urlencode(query) if query else "")


def _send(sock: socket.socket, method: str, url: str, body: object, extra: dict[str, str]) -> None:
    payload = b"" if body is None else json.dumps(body).encode()
    head = [f"{method} {url} HTTP/1.1", "Host: docker", f"Content-Length: {len(payload)}"]
    if body is not None:
        head.append("Content-Type: application/json")
    head += [f"{k}: {v}" for k, v in extra.items()]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)


def _read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read up to the blank line; returns status, lower-cased headers and the bytes after it."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("the docker engine closed the connection mid-reply")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = dict((k.strip().lower(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines[1:]))
    return int(lines[0].split()[1]), headers, rest


def _read_body(sock: socket.socket, headers: dict[str, str], rest: bytes) -> bytes:
    if "content-length" in headers:
        return _read_exact(sock, rest, int(headers["content-length"]))
    data = _read_to_eof(sock, rest)
    return _dechunk(data) if headers.get("transfer-encoding") == "chunked" else data


def _read_exact(sock: socket.socket, buf: bytes, size: int) -> bytes:
    while len(buf) < size:
        chunk = sock.recv(max(65536, size - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf[:size]


def _read_to_eof(sock: socket.socket, buf: bytes) -> bytes:
    parts = [buf]
    while chunk := sock.recv(65536):
        parts.append(chunk)
    return b"".join(parts)


def _dechunk(data: bytes) -> bytes:
    out: list[bytes] = []
    pos = 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[end + 2:end + 2 + size])
        pos = end + 2 + size + 2


def _error_message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message", body))
    except (ValueError, AttributeError):
        return body.decode("utf-8", "replace").strip()


def quote_id(ref: str) -> str:
    """A container id or name, safe inside a URL path."""
    return quote(ref, safe="")
