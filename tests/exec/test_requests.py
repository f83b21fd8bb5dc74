"""The keeper's wire records: what a client sends decodes to the same record, and nothing else is acted on."""
from __future__ import annotations

import marshal
import socket
import subprocess
import sys

import pytest

from bridge import frames
from bridge.exec import requests
from bridge.exec.options import parse
from bridge.exec.requests import BadRecord, Exit, HostDone, Request
from bridge.sync import gitlink


def _request(**changes) -> Request:
    options = parse(["--on", "web", "-e", "A=1", "--timeout", "2", "--json", "--", "uname", "-a"])
    return Request(options=options, argv=("exec", "x"), cwd="/tmp", ident=(("HOME", "/root"),), stdin=True,
                   **changes)


def test_a_request_survives_the_wire_field_for_field() -> None:
    sent = _request()
    assert requests.decode(Request, requests.encode(sent)) == sent
    done = HostDone(index=3, exit_code=1, status="failed", duration=0.25, timed_out=False, error="a\nb")
    assert requests.decode(HostDone, requests.encode(done)) == done


def _wire(**changes) -> bytes:
    data = marshal.loads(requests.encode(_request()))
    options = {**data["options"], **changes.pop("options", {})}
    return marshal.dumps({**data, "options": options, **changes})


@pytest.mark.parametrize("payload, why", [
    (_wire(version=2), "protocol version 2, this keeper speaks 1"),
    (_wire(extra=1), "unknown field 'extra'"),
    (_wire(options={"tty": "yes"}), "WireOptions.tty: str is not allowed"),
    (_wire(options={"forks": True}), "WireOptions.forks: bool is not allowed"),
    (_wire(options={"command": ("ok", 3)}), "command holds a value that is not a string"),
    (_wire(options={"env": {"A": b"1"}}), "env holds a value that is not a string"),
    (_wire(options={"record": None}), "unknown field 'record'"),
    (marshal.dumps(["not", "a", "mapping"]), "must be a mapping"),
    (b"\x00garbage", "malformed Request frame"),
    (repr({"argv": ["exec"]}).encode(), "malformed Request frame"),  # the old repr/literal_eval wire
])
def test_anything_but_a_whole_current_request_is_refused_with_its_reason(payload: bytes, why: str) -> None:
    with pytest.raises(BadRecord, match="^malformed Request frame: ") as refused:
        requests.decode(Request, payload)
    assert why in str(refused.value)


def test_an_exit_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(BadRecord, match="missing field 'message'"):
        requests.decode(Exit, marshal.dumps({"code": 0}))


def test_the_git_relay_reads_the_frames_bridge_frames_writes(tmp_path) -> None:
    """The relay script cannot import bridge: it must still decode HEADER's layout (stdout, stderr, exit)."""
    path = str(tmp_path / "s")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)
    relay = subprocess.Popen([sys.executable, "-I", "-S", "-c", gitlink.RELAY, path, "host", "git-upload-pack 'r'"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    client, _ = server.accept()
    with client, server:
        kind, size = frames.HEADER.unpack(client.recv(frames.HEADER.size, socket.MSG_WAITALL))
        assert (kind, client.recv(size, socket.MSG_WAITALL)) == (b"C", b"host\0git-upload-pack 'r'")
        client.sendall(frames.frame(b"1", b"out") + frames.frame(b"2", b"err") + frames.frame(b"X", b"7"))
        client.shutdown(socket.SHUT_WR)
        out, err = relay.communicate(timeout=30)
    assert (relay.returncode, out, err) == (7, b"out", b"err")
