"""`bridge hub serve`: uvicorn serving the hub's app over TLS 1.3, with its state under one directory."""
from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from bridge import paths
from bridge.hub.cert import CertFiles, ensure_self_signed, load, server_context
from bridge.hublink import MAX_MESSAGE

if TYPE_CHECKING:
    import uvicorn

DEFAULT_PING = 20.0
# asyncio's TLS layer gives every connection a read buffer of SSLProtocol.max_size (256 KiB), zero-filled
# and so resident: 1,000 idle agents held 250 MB of it. One TLS record (16 KiB) is all a read can decrypt
# at once anyway (bench/bench_hub.py: hub memory per idle agent 325 -> 85 KiB, CPU per 200 MB unchanged).
# Even 16 KiB a connection was a fifth of an idle agent's cost, for a buffer that holds ciphertext only
# between the socket's recv_into() and buffer_updated(), which copies it into the connection's own
# MemoryBIO in the same callback: so one buffer per thread serves every connection (73.4 -> 59.6 KiB
# per idle agent in the swarm). tests/hub/test_serve.py fails when asyncio stops reading through get_buffer's
# view or stops honouring max_size.
TLS_READ_BUFFER = 16 << 10
# A storm of TLS handshakes (1,000 agents at once after a restart) leaves glibc's heap holding the
# handshakes' freed memory for good: free() returns to the OS only what sits at the heap's top. Handing
# the slack back when it passes this much, checked every TRIM_EVERY seconds off the event loop while the
# hub is quiet, took hub memory per idle agent 96.5 -> 73 KiB in bench/bench_hub.py's swarm. Process-wide
# (glibc's malloc): called only by `bridge hub serve`; tests/hub/test_serve.py fails when glibc stops
# offering the calls or they stop returning memory.
TRIM_SLACK = 8 << 20
TRIM_EVERY = 10.0
TRIM_BUSY = 0.2  # of a core: 1,000 idle agents cost ~3 %, a stream of 100 MB/s a whole core


class ServeOptions(NamedTuple):
    """Where and how the hub listens."""

    host: str = "0.0.0.0"
    port: int = 443
    state: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    ping_interval: float = DEFAULT_PING


def state_dir(state: Path | None) -> Path:
    """`--state`, else `$XDG_STATE_HOME/bridge/hub`."""
    return state or paths.state_dir() / "hub"


def certificate(options: ServeOptions) -> CertFiles:
    """The operator's --cert/--key, or the state dir's self-signed one (made now if missing)."""
    if options.cert and options.key:
        return load(options.cert, options.key)
    return ensure_self_signed(state_dir(options.state), [socket.gethostname(), "localhost"])


def build(options: ServeOptions) -> tuple[uvicorn.Server, CertFiles]:
    """The uvicorn Server (not started) and the certificate it presents."""
    import uvicorn

    from bridge.hub.app import Hub, build_app
    from bridge.hub.audit import HubAudit
    from bridge.hub.live import Live
    from bridge.hub.runs import ssh_key
    from bridge.hub.store import Store
    from bridge.hub.tokens import Signer

    small_tls_buffers()
    trim_heap_slack_forever()
    state = state_dir(options.state)
    files = certificate(options)
    store = Store(state / "hub.db")
    hub = Hub(store, Signer(state, store, files.fingerprint), HubAudit(audit_path(state)), Live(),
              options.ping_interval, ssh_key(state)[0])
    config = uvicorn.Config(build_app(hub), host=options.host, port=options.port, log_level="warning",
                            ws_max_size=MAX_MESSAGE, ws_ping_interval=options.ping_interval,
                            ws_ping_timeout=options.ping_interval, ws_per_message_deflate=False,
                            lifespan="on", access_log=False, server_header=False,
                            # uvicorn's own context cannot be held to TLS 1.3 only: ours replaces it
                            ssl_context_factory=lambda _config, _default: server_context(files))
    return uvicorn.Server(config), files


def small_tls_buffers() -> None:
    """One TLS_READ_BUFFER per thread for every asyncio TLS connection's socket reads (process-wide: called
    only by `bridge hub serve`).

    SSLProtocol.__init__ sizes the connection's own buffer from max_size: 0 at the class makes it none (a
    1,000-agent storm of 16 KiB buffers, freed at each first read, left holes between the connections'
    OpenSSL state: 2 KiB more per idle agent). Each connection's decrypting reads take a record, from the
    max_size its first get_buffer() sets.
    """
    import asyncio.sslproto
    import threading

    protocol = asyncio.sslproto.SSLProtocol
    protocol.max_size = 0
    per_thread = threading.local()

    def get_buffer(self: Any, n: int) -> memoryview:  # Any: typeshed has none of its private attributes
        view = getattr(per_thread, "view", None)
        if view is None:
            view = per_thread.view = memoryview(bytearray(TLS_READ_BUFFER))
        self._ssl_buffer, self._ssl_buffer_view = view.obj, view  # what buffer_updated() copies from
        self.max_size = TLS_READ_BUFFER
        return view

    protocol.get_buffer = get_buffer  # type: ignore[method-assign]


def trim_heap_slack_forever() -> None:
    """A daemon thread returning glibc's free heap to the OS when it exceeds TRIM_SLACK and the hub is quiet
    (under TRIM_BUSY of a core over the last TRIM_EVERY s): trimming while a stream flows hands back pages
    the next chunks fault in again (one bench run: 200 MB through the hub 1.4x slower). No-op off glibc."""
    import threading
    import time

    trimmer = heap_trimmer()
    if trimmer is None:
        return

    def run() -> None:
        used = time.process_time()
        while True:
            time.sleep(TRIM_EVERY)
            now = time.process_time()
            if now - used < TRIM_BUSY * TRIM_EVERY:
                trimmer(TRIM_SLACK)
            used = time.process_time()

    threading.Thread(target=run, name="heap-trim", daemon=True).start()


def heap_trimmer() -> Callable[[int], bool] | None:
    """`trim(slack)`: malloc_trim(0) when glibc's heap holds more than `slack` free bytes; True if it trimmed.

    None where the C library is not glibc (musl has neither call). ctypes releases the GIL for the
    call, so the event loop runs on while the heap is walked.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")  # by name: find_library("c") runs ldconfig at every hub start
        mallinfo2, malloc_trim = libc.mallinfo2, libc.malloc_trim
    except (OSError, AttributeError):
        return None

    class MallInfo2(ctypes.Structure):
        """glibc's struct mallinfo2 (2.33+): ten size_t; fordblks is the free bytes the heap holds."""

        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                          "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    mallinfo2.restype = MallInfo2

    def trim(slack: int) -> bool:
        if mallinfo2().fordblks <= slack:
            return False
        malloc_trim(0)
        return True

    return trim


def audit_path(state: Path) -> Path:
    """$BRIDGE_AUDIT_LOG, else `<state>/audit.jsonl`."""
    import os

    override = os.environ.get("BRIDGE_AUDIT_LOG")
    return Path(override) if override else state / "audit.jsonl"
