"""The network floor: plain TCP readers of the same bytes, below any WebSocket library.

Each connection does the HTTP upgrade and sends one masked subscribe by hand,
then the process only moves bytes out of the kernel (``recv_into`` one buffer,
epoll) until every expected byte has arrived. No frame is parsed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import selectors
import socket
import struct
import time
from pathlib import Path
from urllib.parse import urlsplit

from collector.gate.protocol import ASSET_DETAIL, subscribe
from collector.gate.signing import ApiCredentials


def masked(payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    header = struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x81, 0xFE, n)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + body


def connect(url: str, key: str, secret: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ws_key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {ws_key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:  # the feeder sends nothing before the subscribe
        head += sock.recv(1)
    request = subscribe(ASSET_DETAIL, ["!all"], int(time.time()), ApiCredentials(key, secret))
    sock.sendall(masked(request))
    sock.setblocking(False)
    return sock


def main(args: argparse.Namespace) -> None:
    keys = list(json.loads(Path(args.keys).read_text()).values())
    cpu = time.process_time()
    selector = selectors.DefaultSelector()
    for key, secret in keys:
        selector.register(connect(args.url, key, secret), selectors.EVENT_READ)
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    received = 0
    deadline = time.monotonic() + args.timeout
    while received < args.expect_bytes and time.monotonic() < deadline:
        for selected, _ in selector.select(timeout=1.0):
            sock = selected.fileobj
            assert isinstance(sock, socket.socket)
            try:
                received += sock.recv_into(view)
            except BlockingIOError:
                continue
    end = time.monotonic()
    print(
        json.dumps(
            {
                "bytes": received,
                "end": end,
                "cpu_seconds": time.process_time() - cpu,
                "cpu_total": time.process_time(),
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--keys", required=True)
    parser.add_argument("--expect-bytes", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=600)
    main(parser.parse_args())
