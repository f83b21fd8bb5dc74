"""One deploy target as sync sees it: a runner (local or SSH), its deploy root, and git access to repo.git.

local:// and ssh:// take the same path through here; only how bytes travel differs.
"""
from __future__ import annotations

import hashlib
import json
import shlex
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from bridge.config import Config, DeployConfig, Remote
from bridge.errors import ConfigError
from bridge.runners import Runner, open_runner
from bridge.server.layout import Layout, hook_argv
from bridge.sync.prepare import HERE, SERVER_FILES, DeploySettings, prepare_root

STAMP_NAME = "client-stamp"
# $1 root, $2 stamp: exit 0 only when this exact hook version and settings are installed.
STAMP_CHECK = 'test "$(cat "$1/.bridge/client-stamp" 2>/dev/null)" = "$2" && test -f "$1/repo.git/HEAD"'
STAMP_WRITE = 'printf %s "$2" > "$1/.bridge/client-stamp"'


class Target:
    """A server remote opened for sync; a context manager that closes its connection."""

    def __init__(self, config: Config, remote: Remote) -> None:
        self.remote = remote
        self.host = remote.name
        self.workspace = config.workspace
        self.runner: Runner = open_runner(config, remote)
        if not self.runner.path.startswith("/"):
            raise ConfigError(f"remotes.{remote.name}.url has no absolute path: {remote.url}",
                              hint="write ssh://user@host/abs/path (the deploy root on the server)")
        self.layout = Layout(Path(self.runner.path))
        self._warm: threading.Thread | None = None
        self._warm_error: Exception | None = None

    def __enter__(self) -> "Target":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (a second close does nothing)."""
        self.runner.close()

    @property
    def root(self) -> str:
        return str(self.layout.root)

    def run(self, argv: Sequence[str], stdin: bytes | None = None) -> tuple[int, str, str]:
        """Run argv on the target (quoted here, never built from a string); (code, stdout, stderr)."""
        code, out, err = self.runner.run_capture(shlex.join(argv), stdin=stdin)
        return code, out.decode(errors="replace"), err.decode(errors="replace")

    def stream(self, argv: Sequence[str], on_line: Callable[[str], None]) -> int:
        """Run argv on the target, handing each output line (stdout and stderr) over as it comes."""
        lock = threading.Lock()  # a transport may deliver the two streams from two threads

        def one_line(line: str) -> None:
            with lock:
                on_line(line)

        out, err = LineSplitter(one_line), LineSplitter(one_line)
        result = self.runner.run_stream(shlex.join(argv), on_stdout=out.feed, on_stderr=err.feed, capture=False)
        out.flush()
        err.flush()
        return result.exit_code

    def hook(self, *args: str) -> list[str]:
        """argv of the installed deploy hook with `args`."""
        return hook_argv(self.root, *args)

    def start(self, deploy: DeployConfig) -> "Target":
        """Connect and check the deploy root (preparing it if needed) in a background thread, so the
        handshake overlaps the caller's local work: planning the push, git's start-up. Idempotent."""
        if self._warm is None:
            self._warm = threading.Thread(target=self._warm_up, args=(deploy,), daemon=True)
            self._warm.start()
        return self

    def ready(self) -> None:
        """Wait for start()'s work; re-raise its failure, so an unreachable host is never tried twice."""
        assert self._warm is not None, "start() first"
        self._warm.join()
        if self._warm_error is not None:
            raise self._warm_error

    def _warm_up(self, deploy: DeployConfig) -> None:
        try:
            self.runner.connect()
            self.ensure_prepared(deploy)
        except Exception as e:  # handed to ready(), in the caller's thread
            self._warm_error = e

    @contextmanager
    def git_remote(self, before: Callable[[], object] | None = None
                   ) -> Iterator[tuple[str, dict[str, str], object]]:
        """(url, env, link) for local git to reach repo.git: the transport's own URL, else through a GitLink.

        `before` runs ahead of any git session, overlapping git's start-up through a link; it must
        leave the connection open (push passes ready()). Without it, the connection opens here first.
        """
        direct = self.runner.git_url(str(self.layout.repo))
        if direct is not None:
            if before is not None:
                before()
            yield direct, {}, None
            return
        from bridge.sync.gitlink import GitLink

        if before is None:
            self.runner.connect()
        with GitLink(self.runner, str(self.layout.repo), before) as link:
            yield link.url, link.env(), link

    def ensure_prepared(self, deploy: DeployConfig, *, always: bool = False) -> bool:
        """Install hook and settings unless this exact version already is; True when it prepared now."""
        settings = DeploySettings(deploy, self.workspace)
        want = stamp(settings)
        if not always and self.run(["sh", "-c", STAMP_CHECK, "sh", self.root, want])[0] == 0:
            return False
        self.prepare(settings)
        self.run(["sh", "-c", STAMP_WRITE, "sh", self.root, want])
        return True

    def prepare(self, settings: DeploySettings) -> dict:
        """Create or update the deploy root (bare repo, hook, settings). Raises RemoteError."""
        return prepare_root(self._run_for_prepare, self.root, settings)

    def _run_for_prepare(self, argv: Sequence[str], stdin: bytes) -> tuple[int, str]:
        code, out, err = self.run(argv, stdin)
        return code, out if code == 0 else out + err


def stamp(settings: DeploySettings) -> str:
    """Changes whenever the server files or the settings change, so the next push re-prepares."""
    digest = hashlib.sha256(json.dumps(settings.as_json(), sort_keys=True).encode())
    for name in (*SERVER_FILES, "install.py"):
        digest.update((HERE / name).read_bytes())
    return digest.hexdigest()[:24]


class LineSplitter:
    """Bytes in, whole decoded lines out (`\\n` or git's `\\r` progress ends)."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self.on_line = on_line
        self.buffer = b""

    def feed(self, data: bytes) -> None:
        self.buffer += data.replace(b"\r", b"\n")
        *whole, self.buffer = self.buffer.split(b"\n")
        for line in whole:
            if line:
                self.on_line(line.decode(errors="replace"))

    def flush(self) -> None:
        if self.buffer:
            self.on_line(self.buffer.decode(errors="replace"))
        self.buffer = b""
