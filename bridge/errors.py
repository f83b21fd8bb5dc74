"""One error root for bridge: every expected failure is a BridgeError with an exit code and a hint.

Only ``bridge.cli.main`` catches these; everything below raises them, translating
third-party errors at the boundary (``raise AuthError(...) from e``).
"""
from __future__ import annotations


class ExitCode:
    """Exit codes as ssh(1) and timeout(1) use them (DESIGN §4).

    Plain ints, not an IntEnum: `enum` costs ~7 ms to import and every run, the warm exec path
    included, imports this module.
    """

    OK = 0
    FAILED = 1
    USAGE = 2
    TIMEOUT = 124
    SANDBOX = 125
    POLICY = 126
    INTERRUPTED = 130
    OOM = 137
    CONNECT = 255


class BridgeError(Exception):
    """An expected failure: a one-line cause, an exit code, and a next step."""

    exit_code: int = ExitCode.FAILED
    default_hint: str = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = self.default_hint if hint is None else hint

    def __str__(self) -> str:
        return self.message


class UsageError(BridgeError):
    """Bad arguments on the command line."""

    exit_code: int = ExitCode.USAGE
    default_hint = "run with --help for usage"


class ConfigError(BridgeError):
    """A config file is missing, malformed or names something unknown."""

    exit_code: int = ExitCode.USAGE


class ConnectError(BridgeError):
    """A host cannot be reached (DNS, refused, timeout, protocol)."""

    exit_code: int = ExitCode.CONNECT
    default_hint = "check the host is up and the address in bridge.yaml; `bridge test` checks every remote"


class AuthError(ConnectError):
    """The server refused every key we offered."""

    default_hint = "check `identity:` in bridge.yaml, your ssh-agent, or the server's authorized_keys"


class HostKeyError(ConnectError):
    """The server's host key is unknown or does not match known_hosts."""


class UnknownHostKey(HostKeyError):
    """known_hosts has no key for this host: refused until the user trusts it."""


class ChangedHostKey(HostKeyError):
    """known_hosts has a different key for this host: always refused."""


class RemoteError(BridgeError):
    """A command or step on the server failed."""


class TimeoutExpired(BridgeError):
    """The run took longer than its timeout and was stopped."""

    exit_code: int = ExitCode.TIMEOUT


class SandboxError(BridgeError):
    """The sandbox or the Docker engine failed (not the code inside it)."""

    exit_code: int = ExitCode.SANDBOX


class PolicyDenied(BridgeError):
    """The policy refuses this operation for this user."""

    exit_code: int = ExitCode.POLICY


class GitError(BridgeError):
    """A local or remote git operation failed or was refused."""


class Interrupted(BridgeError):
    """The user pressed Ctrl-C."""

    exit_code: int = ExitCode.INTERRUPTED


def internal_error(error: BaseException) -> tuple[int, str]:
    """(exit code, one stderr line) for an exception nothing translated: a bug, or a library error
    that escaped its boundary. 255 when it came from the network layer (as ssh exits), else 1."""
    module = type(error).__module__ or ""
    network = isinstance(error, (OSError, EOFError)) or module.split(".")[0] == "paramiko"
    name = type(error).__name__ if module in ("builtins", "") else f"{module}.{type(error).__name__}"
    lines = str(error).strip().splitlines()
    detail = f": {lines[0]}" if lines else ""
    line = f"bridge: internal error: {name}{detail} — rerun with --traceback and report it\n"
    return (ExitCode.CONNECT if network else ExitCode.FAILED), line
