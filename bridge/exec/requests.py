"""The records the warm client and the keeper exchange (bridge.ssh.keeper carries them as frames).

client → keeper: R Request (with it, the client's stdout and stderr as SCM_RIGHTS), I stdin bytes, E EOF
keeper → client: A Accepted, F Declined, 1/2 a single host's stdout/stderr, o/e a fleet host's output
                 (2-byte host index + data), d HostDone, X Exit (also as the first frame, when the request
                 failed before anything ran)

Each record is a dict of plain values in marshal (built in, so the warm client pays no import; the
socket admits only our own uid, and a decoded value is checked field by field before it is used),
with the protocol VERSION in every request: a keeper of another version refuses it, and the client
takes the normal path. Two versions seldom get that far: a keeper's socket is named by the code it
runs (bridge.ssh.keeper.code_stamp), so a CLI after an upgrade starts a keeper of its own.
"""
from __future__ import annotations

import marshal

from bridge.exec.options import EXEC, ExecOptions
from bridge.options import Record
from bridge.ssh import keeper

TYPE_CHECKING = False  # not typing's: importing typing took a warm exec from 18.5 to 34 ms CPU (1.98x to
# 3.67x ControlMaster, interleaved runs). mypy reads the name as True (tests/test_types.py); a keeper test
# keeps typing off the warm path.
if TYPE_CHECKING:
    from typing import Any, TypeVar

    R = TypeVar("R", bound=Record)

VERSION = 1
MARSHAL_VERSION = 4  # fixed, so client and keeper agree whatever their Python
NONE = type(None)


class BadRecord(ValueError):
    """A frame that does not decode to the record it must be: the connection is not served further."""


class WireOptions(Record):
    """ExecOptions as sent: every field but the recorder (which never leaves the client)."""

    FIELDS = {k: v for k, v in ExecOptions.FIELDS.items() if k != "record"}
    TYPES = {**{flag.field: flag.types for flag in EXEC.flags if flag.field != "on"},
             "target": (str, NONE), "command": (tuple,)}
    __slots__ = tuple(FIELDS)


class Request(Record):
    """One `bridge exec` for the keeper: the options, the client's argv (its audit line), cwd and identity,
    and whether I frames (its stdin, or `--python -`) follow."""

    FIELDS = {"version": VERSION, "options": None, "argv": (), "cwd": "", "ident": (), "stdin": False}
    TYPES = {"version": (int,), "options": (dict,), "argv": (tuple,), "cwd": (str,), "ident": (tuple,),
             "stdin": (bool,)}
    __slots__ = tuple(FIELDS)
    version: int
    options: ExecOptions
    argv: tuple[str, ...]
    cwd: str
    ident: tuple
    stdin: bool


class Accepted(Record):
    """The keeper runs it: no hosts for a single-host run (raw 1/2 frames), else the fleet's host names."""

    FIELDS = {"hosts": ()}
    TYPES = {"hosts": (tuple,)}
    __slots__ = tuple(FIELDS)
    hosts: tuple[str, ...]


class Declined(Record):
    """Why the client should run it itself (another environment, a local target, a plan error)."""

    FIELDS = {"reason": ""}
    TYPES = {"reason": (str,)}
    __slots__ = tuple(FIELDS)
    reason: str


class Exit(Record):
    """The run's exit code and the text for the client's stderr (an error line, a timeout note)."""

    FIELDS = {"code": 0, "message": ""}
    TYPES = {"code": (int,), "message": (str,)}
    __slots__ = tuple(FIELDS)
    code: int
    message: str


class HostDone(Record):
    """One fleet host's result: the row ExecResult.to_dict gives, less the host name (its index here)."""

    FIELDS = {"index": 0, "exit_code": 0, "status": "", "duration": 0.0, "timed_out": False, "error": None}
    TYPES = {"index": (int,), "exit_code": (int,), "status": (str,), "duration": (float, int),
             "timed_out": (bool,), "error": (str, NONE)}
    __slots__ = tuple(FIELDS)
    index: int
    exit_code: int
    status: str
    duration: float
    timed_out: bool
    error: str | None


def identity() -> tuple:
    """keeper.identity() as the Request carries it: pairs of (name, value)."""
    return tuple(tuple(pair) for pair in keeper.identity())


def encode(record: Record) -> bytes:
    """A record as its frame's payload."""
    data = record.as_dict()
    if isinstance(record, Request):
        options = data["options"].as_dict()
        data["options"] = {k: v for k, v in options.items() if k != "record"}
    return marshal.dumps(data, MARSHAL_VERSION)


def decode(cls: type[R], payload: bytes) -> R:
    """The `cls` record in `payload`; raises BadRecord with the reason when it is anything else."""
    try:
        data = marshal.loads(payload)
        if cls is Request:
            return _request(data)  # type: ignore[return-value]
        return cls.from_wire(data)
    except (ValueError, EOFError, TypeError) as e:
        raise BadRecord(f"malformed {cls.__name__} frame: {e}") from None


def _request(data: Any) -> Request:
    if isinstance(data, dict) and data.get("version") != VERSION:
        raise ValueError(f"protocol version {data.get('version')!r}, this keeper speaks {VERSION}")
    request = Request.from_wire(data)
    options = WireOptions.from_wire(request.options)
    _strings("command", options.command)
    _strings("argv", request.argv)
    _strings("env", [*options.env, *options.env.values()])
    return request.replace(options=ExecOptions(**options.as_dict()))


def _strings(field: str, values: Any) -> None:
    if not all(isinstance(value, str) for value in values):
        raise ValueError(f"{field} holds a value that is not a string")
