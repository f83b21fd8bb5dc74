"""PTY runs: `bridge shell`, `exec --tty` (raw terminal, window size, Ctrl-C) and `exec --sudo`.

sudo's password is asked once per run (or taken from BRIDGE_SUDO_PASSWORD) and typed into
each host's PTY when sudo shows our prompt marker: never in argv, never echoed (sudo turns the
PTY's echo off while it reads), never written to output or logs. With a PTY the server merges
stderr into stdout, as a terminal does.
"""
from __future__ import annotations

import getpass
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bridge import config as cfg
from bridge import targets
from bridge.config import Config, Remote
from bridge.errors import BridgeError, ExitCode, UsageError
from bridge.exec import output
from bridge.exec import remote as remote_script
from bridge.exec.service import ExecRequest
from bridge.result import ExecResult
from bridge.runners import TIMED_OUT, open_runner
from bridge.transport import PtySession

if TYPE_CHECKING:
    from bridge.exec.options import ExecOptions

SUDO_PROMPT = "[bridge-sudo] password:"
LOGIN_SHELL = 'exec "${SHELL:-/bin/sh}" -l'
Sink = Callable[[bytes], None]


class SudoPassword:
    """The password, asked at most once per run however many hosts want it."""

    def __init__(self) -> None:
        self._value: str | None = os.environ.get("BRIDGE_SUDO_PASSWORD")
        self._lock = threading.Lock()

    def get(self) -> str:
        """Raises UsageError when there is no terminal to ask on and no BRIDGE_SUDO_PASSWORD."""
        with self._lock:
            if self._value is None:
                self._value = _ask()
            return self._value


def _ask() -> str:
    """Ask on /dev/tty only: never read a password from a pipe meant for the command."""
    try:
        with open("/dev/tty", "r+") as tty:
            return getpass.getpass("[bridge] sudo password: ", stream=tty)
    except (EOFError, OSError) as e:
        raise UsageError("sudo wants a password and there is no terminal to ask on",
                         hint="set BRIDGE_SUDO_PASSWORD") from e


class PromptAnswerer:
    """Finds sudo's prompt marker in PTY output, types the password, and cuts the marker out."""

    def __init__(self, password: SudoPassword, send: Callable[[bytes], Any]) -> None:
        self.password, self.send = password, send
        self.marker = SUDO_PROMPT.encode()
        self.held = b""
        self.answered = 0
        self.after_answer = False

    def filter(self, data: bytes) -> bytes:
        """The output to show; raises BridgeError when sudo asks again (wrong password)."""
        text = self.held + data
        if self.after_answer and text:
            text, self.after_answer = _drop_newline(text), False  # sudo's newline after the hidden input
        if self.marker in text:
            before, _, after = text.partition(self.marker)
            self._answer()
            self.held = b""
            return before + self.filter(after) if after else before
        keep = _partial_suffix(text, self.marker)
        self.held = text[len(text) - keep:] if keep else b""
        return text[:len(text) - keep]

    def _answer(self) -> None:
        if self.answered:
            raise BridgeError("sudo refused the password", hint="check it, or BRIDGE_SUDO_PASSWORD")
        self.answered += 1
        self.after_answer = True
        self.send(self.password.get().encode() + b"\n")


def _drop_newline(text: bytes) -> bytes:
    for newline in (b"\r\n", b"\n"):
        if text.startswith(newline):
            return text[len(newline):]
    return text


def _partial_suffix(text: bytes, marker: bytes) -> int:
    """How many trailing bytes of `text` could begin `marker` (held back until the next read)."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


def sudo_command(script: str) -> str:
    """`script` run as root through sudo, with our prompt marker so the password can be typed for it."""
    return shlex.join(["sudo", "-p", SUDO_PROMPT, "--", "/bin/sh", "-c", script])


def run(config: Config, remotes: list[Remote], request: ExecRequest, options: "ExecOptions") -> int:
    """`exec --tty` (one host, interactive) or `exec --sudo` (one host or a fleet)."""
    password = SudoPassword() if options.sudo else None
    if options.tty:
        if len(remotes) != 1:
            raise UsageError("--tty runs on one host", hint="drop --tty for a fleet")
        return session(config, remotes[0], request, password=password, on_output=tee(options.record))
    if len(remotes) == 1:
        return session(config, remotes[0], request, password=password, interactive=False)
    return _sudo_fleet(config, remotes, request, password, options.forks)  # type: ignore[arg-type]


def shell(target: str | None, record: Sink | None = None) -> int:
    """`bridge shell`: a login shell in the deployed `current` (else home), with a PTY; `record` sees the output."""
    config = cfg.load()
    remotes = targets.resolve(config, target)
    if len(remotes) != 1:
        raise UsageError("bridge shell opens one host", hint="name a single remote")
    return session(config, remotes[0], ExecRequest(LOGIN_SHELL), on_output=tee(record))


def tee(record: Sink | None) -> Sink:
    """Output to our stdout, and to the session recorder when there is one."""
    if record is None:
        return output.stdout_sink

    def both(data: bytes) -> None:
        output.stdout_sink(data)
        record(data)

    return both


def session(config: Config, remote: Remote, request: ExecRequest, *, password: SudoPassword | None = None,
            interactive: bool = True, on_output: Sink = output.stdout_sink) -> int:
    """One PTY run; the exit code of the command (124 at the timeout)."""
    with open_runner(config, remote) as runner:
        script = remote_script.script(request.command, deploy_path=runner.path, cwd=request.cwd, env=request.env,
                                      host=remote.name)
        if not interactive:
            script = "stty -onlcr 2>/dev/null\n" + script  # piped output keeps its \n line ends
        command = sudo_command(script) if password else script
        pty = runner.open_pty(command, size=terminal_size())
        try:
            return _drive(pty, password, interactive, on_output, request.timeout)
        finally:
            pty.close()


def terminal_size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except OSError:
        return 80, 24
    return size.columns, size.lines


def _drive(pty: PtySession, password: SudoPassword | None, interactive: bool, sink: Sink,
           timeout: float | None) -> int:
    """Pump the PTY until the command ends: keys in (raw), output out, password typed when asked."""
    answerer = PromptAnswerer(password, pty.write) if password else None
    deadline = time.monotonic() + timeout if timeout else None
    with RawTerminal(pty if interactive else None):
        while True:
            if deadline and time.monotonic() > deadline:
                return TIMED_OUT  # closing the session hangs up the PTY: the command gets SIGHUP
            data = pty.read(0.2)
            if data == b"":
                return pty.wait()
            if data:
                sink(answerer.filter(data) if answerer else data)


class RawTerminal:
    """While a PTY session runs: our terminal raw, keys forwarded, window size followed (SIGWINCH)."""

    def __init__(self, pty: PtySession | None) -> None:
        self.pty = pty
        self.saved: Any = None

    def __enter__(self) -> "RawTerminal":
        if self.pty is None:
            return self
        if os.isatty(0):
            import termios
            import tty

            self.saved = termios.tcgetattr(0)
            tty.setraw(0)
            signal.signal(signal.SIGWINCH, lambda *_: self.pty.resize(*terminal_size()))  # type: ignore
        threading.Thread(target=self._keys, daemon=True).start()
        return self

    def _keys(self) -> None:
        """Every byte typed goes to the command (Ctrl-C included: its PTY turns it into SIGINT)."""
        try:
            while data := os.read(0, 4096):
                self.pty.write(data)  # type: ignore[union-attr]
        except OSError:
            pass

    def __exit__(self, *exc: Any) -> None:
        if self.saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, self.saved)
            signal.signal(signal.SIGWINCH, signal.SIG_DFL)


def _sudo_fleet(config: Config, remotes: list[Remote], request: ExecRequest, password: SudoPassword,
                forks: int | None) -> int:
    """--sudo on many hosts (`forks` at a time): one PTY each, the password asked once, prefixed output,
    then the summary."""
    from bridge.exec.service import fleet_exit_code
    from bridge.fleet import fan_out, host_failure

    printer = output.Prefixed([r.name for r in remotes])

    def one(remote: Remote) -> ExecResult:
        began = time.monotonic()
        try:
            code = session(config, remote, request, password=password, interactive=False,
                           on_output=lambda data: printer.output(remote.name, 1, data))
        except BridgeError as e:
            return ExecResult.failure(host_failure(remote.name, e), duration=time.monotonic() - began)
        finally:
            printer.done(remote.name)
        return ExecResult(code, host=remote.name, duration=time.monotonic() - began)

    results = fan_out(config, remotes, one, forks=forks)
    output.summary([r.to_dict() for r in results])
    return fleet_exit_code(results)
