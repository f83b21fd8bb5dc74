"""One connection pool per engine client, where the docker SDK makes one per request URL.

docker 7.1's UnixHTTPAdapter keys its pools by the whole request URL (path and query too), so each
call about another container opens a new connection and keeps it idle (up to 25 of them). Over a
server's forward each connection is an SSH channel and a `docker system dial-stdio` process, so a
pooled sandbox run on an ssh target took 1040 ms against 96 ms with one pool (in-process, loopback
sshd, medians of 8; this machine's engine: 113 vs 124 ms, noise). The override is requests' public
adapter hook (`HTTPAdapter.get_connection_with_tls_context`); if the SDK or requests stop calling
it, tests/exec/test_sandbox_engine.py's file-descriptor test fails.
Imported only by engine.Engine (the SDK is imported when the first client is made).
"""
from __future__ import annotations

from typing import Any

import docker.transport

POOL_KEY = "http+docker://localhost"  # every request goes to the same socket: one pool for them all


class OnePoolAdapter(docker.transport.UnixHTTPAdapter):
    """The SDK's unix-socket adapter with a single pool, whatever the request's URL."""

    def get_connection_with_tls_context(self, request: Any, verify: Any, proxies: Any = None,
                                        cert: Any = None) -> Any:
        return self.get_connection(POOL_KEY, proxies)


def mount_one_pool(api: "docker.APIClient", base_url: str, timeout: int) -> None:
    """Make `api` (an APIClient for `unix://PATH`) send every request through one pool."""
    api.mount("http+docker://", OnePoolAdapter(base_url.replace("unix://", "http+unix://", 1), timeout))
