"""One Docker engine, spoken to with the docker SDK's low-level client; its failures become SandboxErrors.

The SDK is imported when the first Engine is made: `import docker` costs ~390 ms here (it pulls in
requests), so the connection keeper makes one Engine per engine and keeps it (sandbox_link.KeptEngines):
pooled runs reuse its HTTP connections and pay no import. Every error the SDK, requests or urllib3
raise (daemon down, a reply cut short, a broken chunk, an error status) leaves an Engine method as a
SandboxError with a next step, never as a library exception.
Reference: https://docker-py.readthedocs.io/en/stable/api.html
"""
from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from bridge.errors import SandboxError

if TYPE_CHECKING:
    import docker

API_VERSION = "1.41"  # Docker 20.10+; given, so making a client costs no version request
DEFAULT_URL = "unix:///var/run/docker.sock"
START_HINT = "start the Docker engine: run scripts/start-dockerd.sh (or `systemctl start docker`)"
ATTACH = {"stream": 1, "stdin": 1, "stdout": 1, "stderr": 1}
UPGRADE = {"Connection": "Upgrade", "Upgrade": "tcp"}  # the engine answers 101 and the connection is a raw stream


class EngineError(SandboxError):
    """The engine answered a request with an error status."""

    default_hint = "run it again; if it recurs, see the engine's log (journalctl -u docker)"

    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        super().__init__(f"docker engine: {message} (HTTP {status})", hint)
        self.status = status


class Engine:
    """One Docker engine, addressed by a `unix://` base URL; thread-safe (the SDK pools its connections).

    `hint` says how to fix an unreachable engine; `detail` may say why it is (a forward's last error).
    """

    def __init__(self, base_url: str = DEFAULT_URL, timeout: int = 30, hint: str = START_HINT,
                 detail: Callable[[], str | None] = lambda: None) -> None:
        if not base_url.startswith("unix://"):
            raise SandboxError(f"unsupported docker base_url {base_url!r}", "use unix:///path/to/docker.sock")
        import docker

        from .sdkpool import mount_one_pool

        self.base_url, self.hint, self._detail = base_url, hint, detail
        self.api: docker.APIClient = docker.APIClient(base_url=base_url, version=API_VERSION, timeout=timeout)
        self.api.trust_env = False  # no proxy or netrc lookups in the environment (~1 ms a request): a unix socket
        mount_one_pool(self.api, base_url, timeout)

    def close(self) -> None:
        """Close the client's pooled connections."""
        self.api.close()

    def ping(self) -> None:
        """Raise SandboxError unless the engine answers."""
        with self._answers("ping"):
            self.api.ping()

    def create(self, config: dict, name: str) -> str:
        """Create (not start) a container from an Engine API config; its id."""
        with self._answers("create a container"):
            return str(self.api.create_container_from_config(config, name)["Id"])

    def start(self, ref: str) -> None:
        with self._answers("start a container"):
            self.api.start(ref)

    def rename(self, old: str, new: str) -> None:
        with self._answers("rename a container"):
            self.api.rename(old, new)

    def remove(self, ref: str) -> None:
        """Kill and delete a container and its anonymous volumes."""
        with self._answers("remove a container"):
            self.api.remove_container(ref, v=True, force=True)

    def containers(self, filters: dict[str, list[str]], all: bool) -> list[dict]:
        """The engine's container list (its JSON entries), narrowed by `filters`."""
        with self._answers("list containers"):
            return list(self.api.containers(all=all, filters=filters))

    def wait(self, ref: str, timeout: float | None) -> int:
        """The exit code, once the container stopped; `timeout` None waits as long as it takes."""
        with self._answers("wait for a container"):
            reply = self.api.wait(ref, timeout=timeout)  # type: ignore[arg-type]  # stubs say int; requests takes float
            return int(reply["StatusCode"])

    def inspect(self, ref: str) -> dict:
        with self._answers("inspect a container"):
            return dict(self.api.inspect_container(ref))

    def attach(self, ref: str) -> socket.socket:
        """A raw stream to the container's stdin, stdout and stderr (docker's framed attach protocol), ours to close.

        The SDK's attach_socket hands back a socket *file* whose socket stays open with the reply it drops
        (found: removing a container whose output filled that stream then waited 30 s), so the same request
        goes through the SDK's own session here, and we keep a dup of the upgraded connection and close
        the reply. Nothing is lost in the reply's read buffer: the engine sends no output until the
        launcher got its command from us (spec.INIT), which happens after this returns.
        """
        url = f"{self.api.base_url}/v{API_VERSION}/containers/{quote(ref, safe='')}/attach"
        with self._answers("attach to a container"):
            reply = self.api.post(url, params=ATTACH, headers=UPGRADE, stream=True, timeout=self.api.timeout)
            try:
                if reply.status_code >= 400:
                    raise EngineError(reply.status_code, _message(reply.content))
                connection = reply.raw.connection
                if connection is None or connection.sock is None:
                    raise SandboxError(f"the docker engine at {self.base_url} did not upgrade the attach stream",
                                       "run it again; if it recurs, see the engine's log (journalctl -u docker)")
                sock = connection.sock.dup()
            finally:
                reply.close()
        sock.settimeout(None)  # callers set their own
        return sock

    @contextmanager
    def _answers(self, what: str) -> Iterator[None]:
        """Translate what the SDK and the HTTP stack under it raise into one-line SandboxErrors."""
        import docker.errors
        import requests.exceptions

        try:
            yield
        except docker.errors.APIError as e:
            raise EngineError(e.status_code or 500, str(e.explanation or e)) from e
        except requests.exceptions.Timeout as e:
            raise SandboxError(f"the docker engine at {self.base_url} did not {what} in time", self.hint) from e
        except (requests.exceptions.RequestException, docker.errors.DockerException, OSError) as e:
            raise self._unreachable(what, e) from e

    def _unreachable(self, what: str, error: BaseException) -> SandboxError:
        """Refused, reset, or a reply cut short: say where, and why when the link to it knows."""
        why = self._detail() or _reason(error)
        return SandboxError(f"cannot {what} on the docker engine at {self.base_url}: {why}", self.hint)


def _message(body: bytes) -> str:
    """The engine's error message from its JSON reply, else the reply's text."""
    try:
        return str(json.loads(body)["message"])
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace").strip() or "no message"


def _reason(error: BaseException) -> str:
    """The innermost OS reason (e.g. "No such file or directory"), else what kind of break it was.

    requests wraps urllib3's errors, which wrap the OSError: in causes, `reason` and args."""
    import requests.exceptions

    todo: list[Any] = [error]
    hung_up = False
    while todo:
        seen = todo.pop(0)
        if isinstance(seen, OSError) and seen.strerror:
            return str(seen.strerror)
        hung_up = hung_up or isinstance(seen, (ConnectionError, EOFError))
        todo += [e for e in (seen.__cause__, seen.__context__, getattr(seen, "reason", None), *seen.args)
                 if isinstance(e, BaseException) and e is not seen]
    if isinstance(error, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError,
                          requests.exceptions.InvalidJSONError)):
        return "its reply was cut short or garbled"  # a body shorter than its length, a bad chunk, bad JSON
    if hung_up:  # http.client's RemoteDisconnected: no errno to show
        return "it closed the connection without a reply"
    text = str(error).splitlines()
    return text[0] if text and text[0] else type(error).__name__
