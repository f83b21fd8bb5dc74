"""`bridge hub serve` and `install`: a self-signed certificate whose fingerprint it prints, TLS 1.3 only."""
from __future__ import annotations

import hashlib
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BRIDGE, Home
from tests.hub.conftest import Hub
from tests.sshd import free_port


def _presented(hub: Hub, maximum: ssl.TLSVersion | None = None) -> bytes:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    if maximum:
        context.maximum_version = maximum
    with socket.create_connection((hub.host, hub.port), timeout=10) as raw:
        with context.wrap_socket(raw) as tls:
            assert tls.version() == "TLSv1.3"
            return tls.getpeercert(binary_form=True)


def test_serve_prints_the_fingerprint_of_the_certificate_it_presents(hub: Hub) -> None:
    assert hub.fingerprint == "sha256:" + hashlib.sha256(_presented(hub)).hexdigest()
    assert oct((hub.state / "tls.key").stat().st_mode & 0o777) == "0o600"


def test_tls_below_1_3_is_refused(hub: Hub) -> None:
    with pytest.raises(ssl.SSLError):
        _presented(hub, maximum=ssl.TLSVersion.TLSv1_2)


def test_no_session_ticket_follows_the_handshake(hub: Hub) -> None:
    """A ticket lands while the CLI's sync client reads in one thread and writes its upgrade in another: the
    race that now and then lost the upgrade (no answer within 10 s). Reading the hub's answer to a request
    makes OpenSSL take in anything sent after the handshake, tickets included."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((hub.host, hub.port), timeout=10) as raw:
        with context.wrap_socket(raw) as tls:
            tls.sendall(b"GET /api/v1/agents HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 401")
            assert tls.session is not None and not tls.session.has_ticket


def test_the_same_certificate_after_a_restart(hub: Hub) -> None:
    before = hub.fingerprint
    hub.stop()
    hub.log.write_text("")
    assert hub.start().fingerprint == before


def test_cert_and_key_of_the_operator_are_served(home: Home, tmp_path: Path, hub: Hub) -> None:
    own = Hub(home, tmp_path / "other", free_port(), tmp_path / "other.log")
    cert, key = hub.state / "tls.crt", hub.state / "tls.key"
    own.proc = subprocess.Popen([*BRIDGE, "hub", "serve", "--host", own.host, "--port", str(own.port), "--state",
                                 str(own.state), "--cert", str(cert), "--key", str(key)],
                                stdout=own.log.open("wb"), stderr=subprocess.STDOUT, env=home.env)
    try:
        from tests.hub.conftest import wait_for
        assert wait_for(own._printed_fingerprint, 20) == hub.fingerprint
        assert not (own.state / "tls.crt").exists()
    finally:
        own.stop()


def test_a_busy_port_is_one_line_with_a_hint(bridge, hub: Hub, tmp_path: Path) -> None:
    result = bridge("hub", "serve", "--host", hub.host, "--port", str(hub.port), "--state", str(tmp_path / "s2"))
    assert result.code == 1
    assert "cannot listen on" in result.err and "hint:" in result.err


def test_install_writes_a_unit_that_serves_this_state_dir(bridge, tmp_path: Path) -> None:
    unit = tmp_path / "bridge-hub.service"
    result = bridge("hub", "install", "--port", "8443", "--state", str(tmp_path / "st"), "--user", "root",
                    "--path", str(unit))
    assert result.code == 0, result
    text = unit.read_text()
    assert "User=root" in text and "Restart=always" in text and f"ReadWritePaths={tmp_path / 'st'}" in text
    assert (tmp_path / "st").is_dir()  # made for the unit, which may write nothing else but ~/.ssh
    refused = bridge("hub", "install", "--user", "hubuser", "--path", str(tmp_path / "other.service"))
    assert refused.code == 1 and "no account `hubuser`" in refused.err and not (tmp_path / "other.service").exists()
    assert f"hub serve --host 0.0.0.0 --port 8443 --state {tmp_path / 'st'}" in text


def test_serve_lifts_a_low_soft_fd_limit_so_hundreds_of_agents_fit(home: Home, tmp_path: Path) -> None:
    """Started under a soft limit of 256 open files (hard 8192), the hub raises it and holds 400 connections."""
    hub = Hub(home, tmp_path / "hubstate", free_port(), tmp_path / "hub.log",
              prefix=("prlimit", "--nofile=256:8192", "--")).start()
    held: list[ssl.SSLSocket] = []
    try:
        assert hub.proc is not None
        limits = Path(f"/proc/{hub.proc.pid}/limits").read_text().splitlines()
        assert next(line for line in limits if line.startswith("Max open files")).split()[3:5] == ["8192", "8192"]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        for _ in range(400):  # each a finished TLS handshake: the hub holds a socket for it
            held.append(context.wrap_socket(socket.create_connection((hub.host, hub.port), timeout=10)))
        admin = hub.token("user", "adm", "--role", "admin")
        assert hub.api("/api/v1/agents", admin) == (200, {"agents": []})
    finally:
        for tls in held:
            tls.close()
        hub.stop()


SHARED_BUFFER_PROBE = """
import asyncio, asyncio.sslproto, ssl, sys
from bridge.hub.cert import ensure_self_signed
from bridge.hub.server import TLS_READ_BUFFER, small_tls_buffers

small_tls_buffers()
files = ensure_self_signed(__import__("pathlib").Path(sys.argv[1]), ["localhost"])
server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server_ctx.load_cert_chain(files.cert, files.key)
client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
client_ctx.check_hostname, client_ctx.verify_mode = False, ssl.CERT_NONE
buffers = []

async def echo(reader, writer):
    protocol = writer.transport._ssl_protocol
    while data := await reader.read(1 << 16):
        buffers.append((id(protocol._ssl_buffer), len(protocol._ssl_buffer), protocol.max_size))
        writer.write(data)
        await writer.drain()
    writer.close()

async def client(port, tag):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx)
    sent = bytes([tag]) * 3_000_000
    async def pump():
        for at in range(0, len(sent), 50_000):
            writer.write(sent[at:at + 50_000])
            await writer.drain()
    task = asyncio.create_task(pump())
    got = await reader.readexactly(len(sent))
    await task
    writer.close()
    return got == sent

async def main():
    fresh = asyncio.sslproto.SSLProtocol(asyncio.get_running_loop(), asyncio.Protocol(), server_ctx, None,
                                         server_side=True)
    print(len(fresh._ssl_buffer))
    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    ok = await asyncio.gather(*(client(port, tag) for tag in (1, 2, 3)))
    server.close()
    print(all(ok), len(set(buffers)), buffers[0][1:] == (TLS_READ_BUFFER, TLS_READ_BUFFER))

asyncio.run(main())
"""


def test_every_hub_tls_connection_reads_through_one_shared_buffer(tmp_path: Path) -> None:
    """Fails when asyncio stops copying a read out of get_buffer()'s view at once (three interleaved TLS
    streams would then corrupt each other), when connections no longer share the one buffer, when a new
    connection makes a buffer of its own, or when decrypting reads no longer take a whole record."""
    out = subprocess.run([sys.executable, "-c", SHARED_BUFFER_PROBE, str(tmp_path)], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2], timeout=120).stdout.split()
    assert out == ["0", "True", "1", "True"]  # none of its own; every byte intact; one buffer, of one record


def test_the_heap_trimmer_hands_freed_heap_back_to_the_os() -> None:
    """Fails when glibc stops offering mallinfo2/malloc_trim (or they stop returning a freed heap): the
    hub would then keep a restart storm's handshake memory for good."""
    probe = ("from bridge.hub.server import heap_trimmer\n"
             "rss = lambda: int(open('/proc/self/statm').read().split()[1]) * 4096\n"
             "trim = heap_trimmer()\n"
             "held = [bytes(2000) for _ in range(50000)]\n"  # > pymalloc's 512 B: glibc's heap
             "kept = held[-1:]\n"
             "del held\n"
             "before = rss()\n"
             "print(trim(1 << 40), trim(1 << 20), before - rss())\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout.split()
    assert out[:2] == ["False", "True"]  # under the slack it leaves the heap alone; over it, trims
    assert int(out[2]) > 50 << 20  # ~100 MB freed in the heap: most of it is back with the OS
