"""A fast Gate unified-WebSocket sender for throughput benchmarks (not a simulator).

The Python simulator formats and sends each frame itself, so in a burst the floor
can only go as fast as it does. This feeder builds every update frame up front,
already WebSocket-framed (server frames are not masked), with values that vary
from frame to frame (so gzip sees realistic data), and serves them from several
worker processes (``multiprocessing``, fork) sharing one listening socket:

* ``burst``: once every slot is subscribed, each connection's whole stream goes
  out in one ``transport.write`` (the kernel and the reader set the pace);
* ``paced``: a fixed total rate, each connection one frame at a time, evenly
  spread (frame k of slot s at ``start + (s + k * slots) / rate``).

A connection claims the next free slot (stream) when it subscribes to
``unified.asset_detail``; it answers ``unified.ping`` with a pong, subscribes with
Gate's success ack, WebSocket pings with pongs. Signatures are not checked (the
simulator's REST side is the strict one). The parent knows what every stream
holds (frames, bytes, sum of ``available`` and ``equity`` as floats), so a
client's writes can be checked point by point against it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import heapq
import multiprocessing
import random
import socket
import struct
import time
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized, SynchronizedArray
from typing import Any, Final

import orjson

CURRENCIES: Final = ("USDT", "BTC", "ETH")
FIRST_U: Final = 1000  # below the simulator's user ids (100001...): never a mismatch
GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# Per worker: frames sent, first write (monotonic), last write handed to the kernel, CPU s.
_STATS: Final = 4


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One unmasked (server) WebSocket frame."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return header + payload


def _values(rng: random.Random) -> tuple[dict[str, str], float, float]:
    available = rng.randrange(0, 100_000_000) / 100
    freeze = rng.randrange(0, 1_000_000) / 100
    equity = round(available + freeze, 2)
    values = {
        "a": f"{available:.2f}",
        "f": f"{freeze:.2f}",
        "e": f"{equity:.2f}",
        "tl": "0.00",
        "b": f"{equity:.2f}",
    }
    return values, float(values["a"]), float(values["e"])


@dataclass
class Streams:
    """Every slot's pre-built frames and what they add up to."""

    frames: list[list[bytes]]
    updates: int = 0
    points: int = 0
    bytes: int = 0
    payload_bytes: int = 0
    available_sum: float = 0.0
    equity_sum: float = 0.0


def build_streams(slots: int, per_slot: int, seed: int = 16) -> Streams:
    """``per_slot`` asset_detail updates (3 currencies, varying values) for each slot.

    ``time_ms`` is unique per slot (one ms apart), so no two points of one series
    share a timestamp (InfluxDB would keep only one of them).
    """
    rng = random.Random(seed)
    base_ms = int(time.time() * 1000) - 3_600_000  # before any REST snapshot's time
    streams = Streams(frames=[])
    for _ in range(slots):
        frames = []
        for i in range(per_slot):
            ms = base_ms + i
            dts = {}
            for currency in CURRENCIES:
                values, available, equity = _values(rng)
                dts[currency] = values
                streams.available_sum += available
                streams.equity_sum += equity
            body = {
                "time": ms // 1000,
                "time_ms": ms,
                "channel": "unified.asset_detail",
                "event": "update",
                "result": {"u": FIRST_U + i, "t": ms // 1000, "dts": dts},
            }
            payload = orjson.dumps(body)
            frame = ws_frame(payload)
            streams.payload_bytes += len(payload)
            streams.bytes += len(frame)
            frames.append(frame)
        streams.frames.append(frames)
    streams.updates = slots * per_slot
    streams.points = streams.updates * len(CURRENCIES)
    return streams


def ack_frame(channel: str) -> bytes:
    """Gate's subscribe success ack (fixed time: a fixed size the raw reader can expect)."""
    body = {
        "time": 1_700_000_000,
        "time_ms": 1_700_000_000_000,
        "channel": channel,
        "event": "subscribe",
        "result": {"status": "success"},
    }
    return ws_frame(orjson.dumps(body))


@dataclass
class _Shared:
    mode: str
    rate: float
    streams: Streams
    slot_next: Synchronized[int]
    subscribed: Synchronized[int]
    start: Any  # multiprocessing.Event
    stop: Any
    stats: SynchronizedArray[float]


@dataclass
class _Worker:
    shared: _Shared
    index: int
    ready: list[tuple[int, asyncio.Transport]] = field(default_factory=list)

    def stat(self, i: int) -> float:
        return float(self.shared.stats[self.index * _STATS + i])

    def set_stat(self, i: int, value: float) -> None:
        self.shared.stats[self.index * _STATS + i] = value

    def claim(self, transport: asyncio.Transport) -> None:
        with self.shared.slot_next.get_lock():
            slot = self.shared.slot_next.value
            self.shared.slot_next.value += 1
        if slot >= len(self.shared.streams.frames):
            transport.close()  # more connections than streams: a reconnect; nothing to send
            return
        self.ready.append((slot, transport))
        with self.shared.subscribed.get_lock():
            self.shared.subscribed.value += 1

    async def run(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Protocol(self), sock=sock)
        await loop.run_in_executor(None, self.shared.start.wait)
        self.set_stat(1, time.monotonic())
        if self.shared.mode == "burst":
            await self._burst()
        else:
            await self._paced()
        await loop.run_in_executor(None, self.shared.stop.wait)
        server.close()

    async def _burst(self) -> None:
        frames = self.shared.streams.frames
        for slot, transport in self.ready:
            transport.write(b"".join(frames[slot]))
        self.set_stat(0, sum(len(frames[slot]) for slot, _ in self.ready))
        while any(t.get_write_buffer_size() for _, t in self.ready if not t.is_closing()):
            await asyncio.sleep(0.001)
        self.set_stat(2, time.monotonic())
        self.set_stat(3, time.process_time())

    async def _paced(self) -> None:
        frames = self.shared.streams.frames
        slots = len(frames)
        interval = slots / self.shared.rate
        start = self.stat(1)
        due = [(start + slot / self.shared.rate, slot, 0, t) for slot, t in self.ready]
        heapq.heapify(due)
        sent = 0
        while due:
            now = time.monotonic()
            while due and due[0][0] <= now:
                _, slot, k, transport = heapq.heappop(due)
                if not transport.is_closing():
                    transport.write(frames[slot][k])
                    sent += 1
                if k + 1 < len(frames[slot]) and not transport.is_closing():
                    when = start + (slot + (k + 1) * slots) / self.shared.rate
                    heapq.heappush(due, (when, slot, k + 1, transport))
            self.set_stat(0, sent)
            if due:
                await asyncio.sleep(max(0.0, due[0][0] - time.monotonic()))
        del interval
        self.set_stat(2, time.monotonic())
        self.set_stat(3, time.process_time())


class _Protocol(asyncio.Protocol):
    """One client connection: HTTP upgrade, then masked client frames in."""

    def __init__(self, worker: _Worker) -> None:
        self.worker = worker
        self.buffer = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self._upgrade(bytes(self.buffer[:end]))
            del self.buffer[: end + 4]
        while (frame := self._next_frame()) is not None:
            self._on_frame(*frame)

    def _upgrade(self, head: bytes) -> None:
        key = b""
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + GUID, usedforsecurity=False).digest())
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.upgraded = True

    def _next_frame(self) -> tuple[int, bytes] | None:
        buf = self.buffer
        if len(buf) < 2:
            return None
        opcode, n, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                return None
            n, at = struct.unpack_from("!H", buf, 2)[0], 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n, at = struct.unpack_from("!Q", buf, 2)[0], 10
        masked = buf[1] & 0x80
        end = at + (4 if masked else 0) + n
        if len(buf) < end:
            return None
        payload = bytes(buf[end - n : end])
        if masked:
            mask = bytes(buf[at : at + 4]) * (n // 4 + 1)
            payload = bytes(a ^ b for a, b in zip(payload, mask, strict=False))
        del buf[:end]
        return opcode, payload

    def _on_frame(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        if opcode == 0x8:
            self.transport.write(ws_frame(payload[:2], 0x8))
            self.transport.close()
        elif opcode == 0x9:
            self.transport.write(ws_frame(payload, 0xA))
        elif opcode in (0x1, 0x2):
            self._on_message(orjson.loads(payload))

    def _on_message(self, message: dict[str, Any]) -> None:
        assert self.transport is not None
        channel = message.get("channel")
        if channel == "unified.ping":
            now = time.time()
            pong = {"time": int(now), "time_ms": int(now * 1000), "channel": "unified.pong"}
            self.transport.write(ws_frame(orjson.dumps({**pong, "event": "", "result": None})))
        elif message.get("event") == "subscribe" and isinstance(channel, str):
            self.transport.write(ack_frame(channel))
            if channel == "unified.asset_detail":
                self.worker.claim(self.transport)


def _worker_main(shared: _Shared, index: int, sock: socket.socket) -> None:
    asyncio.run(_Worker(shared, index).run(sock))


class Feeder:
    """The feeder's parent: builds the streams, forks the workers, reads their counters."""

    def __init__(
        self, streams: Streams, mode: str = "burst", rate: float = 0.0, workers: int = 2
    ) -> None:
        ctx = multiprocessing.get_context("fork")
        self.streams = streams
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4096)
        self.sock.setblocking(False)
        self.url = f"ws://127.0.0.1:{self.sock.getsockname()[1]}/v4/ws/unified"
        self.shared = _Shared(
            mode=mode,
            rate=rate,
            streams=streams,
            slot_next=ctx.Value("q", 0),
            subscribed=ctx.Value("q", 0),
            start=ctx.Event(),
            stop=ctx.Event(),
            stats=ctx.Array("d", [0.0] * (_STATS * workers)),
        )
        self.workers = [
            ctx.Process(target=_worker_main, args=(self.shared, i, self.sock), daemon=True)
            for i in range(workers)
        ]
        for process in self.workers:
            process.start()
        self.started_at = 0.0
        self.cpu_at_start = 0.0

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.workers if p.pid is not None]

    @property
    def subscribed(self) -> int:
        return int(self.shared.subscribed.value)

    def start(self) -> float:
        """Let the frames go; returns time.monotonic() of the go."""
        from tests.bench.harness import cpu_seconds

        self.cpu_at_start = sum(cpu_seconds(pid) for pid in self.pids)
        self.started_at = time.monotonic()
        self.shared.start.set()
        return self.started_at

    def sent(self) -> int:
        return int(sum(self.shared.stats[i * _STATS] for i in range(len(self.workers))))

    def finished_at(self) -> float:
        """When the last worker handed its last frame to the kernel (0 while sending)."""
        ends = [self.shared.stats[i * _STATS + 2] for i in range(len(self.workers))]
        return 0.0 if not all(ends) else max(ends)

    def report(self) -> dict[str, float]:
        """Frames sent, the send rate (go to last frame handed over), CPU per frame."""
        from tests.bench.harness import cpu_seconds

        cpu = sum(cpu_seconds(pid) for pid in self.pids) - self.cpu_at_start
        end = self.finished_at() or time.monotonic()
        sent = self.sent()
        return {
            "sent": float(sent),
            "rate": sent / max(end - self.started_at, 1e-9),
            "cpu_us_per_frame": cpu / max(sent, 1) * 1e6,
        }

    def close(self) -> None:
        self.shared.start.set()
        self.shared.stop.set()
        for process in self.workers:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
        self.sock.close()


def raise_fd_limit(wanted: int) -> None:
    """Lift this process's (and its children's) open-files limit towards ``wanted``."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    try:  # root (or CAP_SYS_RESOURCE) may lift the hard limit too
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
