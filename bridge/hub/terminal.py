"""Web terminal sessions: a PTY over SSH through the agent (runs.py's path), kept alive after its socket goes.

Output lands in a byte-offset ring; a browser (re)attaches with the offset it has drawn and gets the
rest, so a reload or a network blip loses nothing and repeats nothing. The browser acks what xterm.js
has drawn: the hub sends at most WINDOW bytes past the ack, and stops reading SSH while more than
HIGH_WATER is unacked (ttyd's flow control), so a flood keeps memory bounded, the page responsive,
and the output still queued when Ctrl-C stops the flood is short. The channel is read on the event
loop (paramiko's channel fileno is a pipe that turns readable with data): no reader thread, and no
GIL hand-off between threads on each keystroke's echo.
"""
from __future__ import annotations

import asyncio
import secrets
import shlex
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from bridge.hub.tokens import UserClaims

if TYPE_CHECKING:
    import paramiko

    from bridge.hub.app import Hub
    from bridge.security.recording import Recorder

REATTACH_WINDOW = 120.0  # seconds a session outlives its socket, for a reload or a network blip
RING_SIZE = 8 << 20  # output kept for reattaching
# A flood's backlog behind a Ctrl-C is what the page must still parse before the prompt shows: up to
# HIGH_WATER in the ring plus SSH_WINDOW held by paramiko plus what the agent's sockets hold. xterm.js
# parses 3-5 MB/s of `yes` in headless chromium here, so bench/bench_webterm.py measured Ctrl-C to the
# next prompt 2.1 s with 4 MiB + 8 MiB (the connection's window, sized for exec throughput), 0.5 s with
# 1 MiB + 1 MiB, at the same flood rate (the page's parsing is the bottleneck, not these).
HIGH_WATER = 1 << 20  # unacked bytes at which reading SSH stops (below RING_SIZE: unacked output is never dropped)
SSH_WINDOW = 1 << 20  # the terminal channel's SSH window
WINDOW = 512 << 10  # bytes sent past the last ack (the page acks every quarter of it, told in `ready`)
CHUNK = 64 << 10
INPUT_RETRY = 0.01  # seconds between tries while the server's SSH window is full (a huge paste)


class Ring:
    """The last RING_SIZE bytes of a stream, addressed by their offset in the whole stream."""

    def __init__(self, size: int = RING_SIZE) -> None:
        self.size = size
        self.data = bytearray()
        self.start = 0  # offset of data[0]

    @property
    def end(self) -> int:
        return self.start + len(self.data)

    def append(self, chunk: bytes) -> None:
        self.data += chunk
        over = len(self.data) - self.size
        if over > 0:
            del self.data[:over]
            self.start += over

    def read(self, offset: int, limit: int) -> tuple[int, bytes]:
        """Up to `limit` bytes from `offset` (or from the oldest kept byte): (where they start, bytes)."""
        offset = max(offset, self.start)
        index = offset - self.start
        return offset, bytes(self.data[index:index + limit])


@dataclass
class Spec:
    """What a browser asked to open: a login shell, or one command, on an agent for a workspace."""

    agent: str
    workspace: str | None
    command: str | None  # None: a login shell
    cols: int = 80
    rows: int = 24


@dataclass
class TermSession:
    """One PTY on a server; outlives browser sockets for REATTACH_WINDOW."""

    id: str
    user: str
    spec: Spec
    channel: "paramiko.Channel"
    connection: Any
    recorder: "Recorder"
    loop: asyncio.AbstractEventLoop
    on_end: Callable[["TermSession"], None]
    ring: Ring = field(default_factory=Ring)
    acked: int = 0
    exit_code: int | None = None
    started: float = field(default_factory=time.monotonic)
    attached: Any = None  # the browser's WebSocket, while one is attached
    generation: int = 0  # bumps on every attach and detach: a stale expiry timer sees it changed
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    reading: bool = False
    finishing: bool = False

    @property
    def ended(self) -> bool:
        return self.exit_code is not None

    def start(self) -> None:
        self.channel.settimeout(0.0)
        self._resume()

    def _resume(self) -> None:
        if not self.reading and not self.finishing:
            self.loop.add_reader(self.channel.fileno(), self._readable)
            self.reading = True

    def _pause(self) -> None:
        if self.reading:
            self.loop.remove_reader(self.channel.fileno())
            self.reading = False

    def _readable(self) -> None:
        """SSH output into the ring and the recording; at EOF the session finishes."""
        try:
            data = self.channel.recv(CHUNK)
        except socket.timeout:
            return  # the pipe woke us for nothing left to read
        except OSError:
            data = b""
        if not data:
            self._pause()
            self.finishing = True
            asyncio.ensure_future(self._finish())
            return
        self.ring.append(data)
        self.recorder.output(data)
        self.wake.set()
        if self.ring.end - self.acked >= HIGH_WATER:
            self._pause()

    async def _finish(self) -> None:
        code = await asyncio.to_thread(self.channel.recv_exit_status)  # -1 when the hub hung up the PTY
        self.recorder.__exit__(None, None, None)
        await asyncio.to_thread(self.connection.close)
        self.exit_code = code
        self.wake.set()
        self.on_end(self)

    def ack(self, offset: int) -> None:
        """The browser has drawn everything before `offset`."""
        self.acked = max(self.acked, min(offset, self.ring.end))
        if self.ring.end - self.acked < HIGH_WATER:
            self._resume()
        self.wake.set()

    async def send_input(self, data: bytes) -> None:
        """Keys to the PTY; sent at once unless the server's SSH window is full, then as it opens."""
        while data:
            try:
                data = data[self.channel.send(data):]
            except socket.timeout:
                await asyncio.sleep(INPUT_RETRY)
            except OSError:
                return  # the channel closed: the session is finishing

    async def resize(self, cols: int, rows: int) -> None:
        self.channel.resize_pty(width=cols, height=rows)
        self.recorder.resize(cols, rows)

    async def pump(self, ws: Any, offset: int) -> None:
        """Send output from `offset` to `ws` within the ack window; an `exit` message when the shell ends."""
        sent = max(offset, self.ring.start)
        while True:
            self.wake.clear()
            if sent < self.ring.end and sent - self.acked < WINDOW:
                at, data = self.ring.read(sent, CHUNK)
                await ws.send_bytes(data)
                sent = at + len(data)
                continue
            if self.ended and sent >= self.ring.end:
                await ws.send_json({"type": "exit", "code": self.exit_code})
                return
            await self.wake.wait()

    def close(self) -> None:
        """Hang up the PTY (the server's shell gets SIGHUP); reading then sees EOF and finishes the session."""
        self._pause()  # paramiko closes the fileno pipe we watch; a closed channel's new one is readable at once
        self.channel.close()
        self._resume()


class Terminals:
    """Every live web terminal by id; each ends REATTACH_WINDOW after its last socket went."""

    def __init__(self, hub: "Hub", recordings: Path) -> None:
        self.hub = hub
        self.recordings = recordings
        self.sessions: dict[str, TermSession] = {}

    async def open(self, user: UserClaims, spec: Spec) -> TermSession:
        """Open the PTY through the agent (raises BridgeError when it cannot) and start recording it."""
        loop = asyncio.get_running_loop()
        sid = secrets.token_urlsafe(18)
        channel, connection = await asyncio.to_thread(_open_channel, self.hub, loop, spec)
        recorder = _recorder(self.recordings, sid, user.name, spec)
        session = TermSession(sid, user.name, spec, channel, connection, recorder, loop, self._ended)
        self.sessions[sid] = session
        session.start()
        return session

    def get(self, sid: str, user: UserClaims) -> TermSession | None:
        """`user`'s live session `sid`, else None (another user's session is never handed out)."""
        session = self.sessions.get(sid)
        return session if session is not None and session.user == user.name else None

    def attach(self, session: TermSession, ws: Any, offset: int) -> int:
        """Make `ws` the session's socket; returns the offset the replay starts from."""
        session.generation += 1
        session.attached = ws
        start = min(max(offset, session.ring.start), session.ring.end)
        session.acked = start  # the new page has drawn exactly this much
        session.ack(start)
        return start

    def detach(self, session: TermSession, ws: Any) -> None:
        """`ws` went: keep the session for REATTACH_WINDOW unless another socket attaches meanwhile."""
        if session.attached is not ws:
            return
        session.attached = None
        session.generation += 1
        generation = session.generation
        asyncio.get_running_loop().call_later(REATTACH_WINDOW, self._expire, session, generation)

    def _expire(self, session: TermSession, generation: int) -> None:
        if session.generation == generation and session.attached is None:
            session.close()

    def _ended(self, session: TermSession) -> None:
        """The shell ended: audit it; a socket still attached gets the rest and the exit code from its pump."""
        self.sessions.pop(session.id, None)
        spec = session.spec
        self.hub.audit.record(user=session.user, action="hub.terminal.end", agent=spec.agent,
                              workspace=spec.workspace, command=spec.command or "shell", exit_code=session.exit_code,
                              duration=round(time.monotonic() - session.started, 3),
                              reason=f"recording {session.recorder.path.name} sha256 {session.recorder.sha256}")

    def close_all(self) -> None:
        for session in list(self.sessions.values()):
            session.close()


def _open_channel(hub: "Hub", loop: asyncio.AbstractEventLoop, spec: Spec) -> tuple[Any, Any]:
    """A PTY channel with the server's login shell (the guard's interactive login) or the command; in a thread.

    A command starts in its workspace's folder, the one its agent reported (`agent up --workspace`): the
    deployed `current` in it, else the folder itself. (bridge.exec.remote's script is not used: its
    `[ -d … ]` test is refused by the guard's parser as a computed program name.) A login shell starts
    where sshd starts it, the login directory: an SSH shell request carries no folder, and the server's
    guard refuses an exec that starts a shell (it could not check what is typed into it).
    """
    from bridge.hub import runs

    command = None
    if spec.command is not None:
        folder = workspace_folder(hub, spec)
        enter = [] if folder is None else [_enter(folder)]
        command = "\n".join([*enter, runs.script(runs.RunRequest(spec.command, spec.workspace))])
    connection = runs.hub_connection(hub, loop, spec.agent)
    try:
        channel = connection.exec_channel(command, pty=True, term_size=(spec.cols, spec.rows), window_size=SSH_WINDOW)
    except BaseException:
        connection.close()
        raise
    return channel, connection


def workspace_folder(hub: "Hub", spec: Spec) -> str | None:
    """The folder of the spec's workspace on its agent's server, as the agent reported it; None if it did not."""
    session = hub.live.agents.get(spec.agent)
    return session.workspaces.get(spec.workspace or "") if session is not None else None


def _enter(folder: str) -> str:
    """sh that enters the workspace's deployed `current`, else its folder, else stops (exit 2)."""
    return f"cd -- {shlex.quote(folder + '/current')} 2>/dev/null || cd -- {shlex.quote(folder)} || exit 2"


def _recorder(folder: Path, sid: str, user: str, spec: Spec) -> "Recorder":
    """An open asciicast v2 recorder for the session; its header names who, where and what (for listing)."""
    from bridge.security.recording import Recorder

    recorder = Recorder(folder / f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{sid}.cast", width=spec.cols,
                        height=spec.rows, title=f"{user}@{spec.agent}", command=spec.command or "shell",
                        env={"TERM": "xterm-256color"})
    recorder.header["bridge"] = {"user": user, "agent": spec.agent, "workspace": spec.workspace}
    return recorder.__enter__()
