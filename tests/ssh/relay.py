"""A ProxyCommand for tests, like `nc HOST PORT` or `nc -X connect -x PROXY HOST PORT`: stdin/stdout <-> TCP.

    python3 relay.py HOST PORT [PROXYHOST:PROXYPORT]

With a proxy it first asks it for `CONNECT HOST:PORT` (an HTTP CONNECT proxy such as tinyproxy).
A refusal is one line on stderr and exit 1, as nc says it.
"""
import os
import socket
import sys
import threading


def dial(host: str, port: int, proxy: str | None) -> socket.socket:
    if proxy is None:
        return socket.create_connection((host, port))
    proxy_host, _, proxy_port = proxy.rpartition(":")
    sock = socket.create_connection((proxy_host, int(proxy_port)))
    sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    status = head.split(b"\r\n", 1)[0].decode(errors="replace")
    if " 200 " not in f"{status} ":
        sys.exit(f"relay: proxy refused CONNECT {host}:{port}: {status}")
    return sock


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    try:
        sock = dial(host, port, sys.argv[3] if len(sys.argv) > 3 else None)
    except OSError as e:
        sys.exit(f"relay: cannot connect to {host}:{port}: {e.strerror or e}")

    def up() -> None:
        while data := os.read(0, 65536):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)

    threading.Thread(target=up, daemon=True).start()
    while data := sock.recv(65536):
        os.write(1, data)


if __name__ == "__main__":
    main()
