"""bridge's one splice, between real sockets and between a socket and a real sshd's exec channel."""
from __future__ import annotations

import socket
import threading
from pathlib import Path

from bridge import config as bridge_config
from bridge.ssh import connect
from bridge.ssh.splice import splice
from tests.conftest import write_config


def spliced() -> tuple[socket.socket, socket.socket, list[bool]]:
    """Our two ends of a splice between two socket pairs; a list that gets True once splice returned."""
    left, a = socket.socketpair()
    b, right = socket.socketpair()
    returned: list[bool] = []
    threading.Thread(target=lambda: returned.append(splice(a, b) is None), daemon=True).start()
    return left, right, returned


def wait_for(returned: list[bool]) -> bool:
    for _ in range(1000):
        if returned:
            return True
        threading.Event().wait(0.01)
    return False


def read_all(sock: socket.socket) -> bytes:
    parts = []
    while data := sock.recv(65536):
        parts.append(data)
    return b"".join(parts)


def test_each_eof_is_passed_on_as_a_half_close() -> None:
    left, right, returned = spliced()
    left.sendall(b"x" * 300_000)
    left.shutdown(socket.SHUT_WR)
    assert read_all(right) == b"x" * 300_000  # EOF arrived: the other way is still open
    right.sendall(b"back")
    right.shutdown(socket.SHUT_WR)
    assert read_all(left) == b"back"
    assert wait_for(returned)  # both directions ended: the splice closed its ends and returned


def test_a_broken_side_ends_both_directions() -> None:
    left, right, returned = spliced()
    right.close()  # gone altogether, not only half-closed
    assert read_all(left) == b""  # its EOF came through; our way in is still open...
    left.sendall(b"more")  # ...until writing on finds the other side broken (EPIPE)
    assert wait_for(returned)  # both directions ended, nothing blocked in recv, no error escaped


def test_a_socket_and_an_exec_channel_of_a_real_sshd(home, sshd, workspace: Path) -> None:
    """The shapes a channel offers (recv, sendall, shutdown, close) are paramiko's public API: this fails
    when they change."""
    write_config(workspace, f"workspace: w\nremotes:\n  prod: {{url: \"{sshd.url('/tmp')}\"}}\n")
    cfg = bridge_config.load(workspace)
    with connect(cfg, cfg.remotes["prod"]) as conn:
        ours, theirs = socket.socketpair()
        thread = threading.Thread(target=splice, args=(theirs, conn.exec_channel("tr a-z A-Z")), daemon=True)
        thread.start()
        ours.sendall(b"spliced over ssh\n")
        ours.shutdown(socket.SHUT_WR)  # tr sees its stdin end only through the channel's EOF
        assert read_all(ours) == b"SPLICED OVER SSH\n"
        thread.join(10)
        assert not thread.is_alive()
