"""A sink in its own process, for the crash tests: spools, reports, waits to be killed.

``sink_worker URL SPOOL COUNT``: sends COUNT points, prints how many are spooled.
``sink_worker forks FD``: a fork server on the Unix socket FD. Each request
(``URL SPOOL RUN SPOOL_AFTER``, with a pipe's write end attached) forks a streaming
worker that sends one update (3 series) every few ms forever, printing
``<u> <monotonic time>`` to that pipe after each is in the sink; the answer is its
pid. A kill loop pays the imports once, not once per kill: from the fork on each
worker is a process of its own (its own trio run, threads, spool and sink).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import httpx
import trio

from collector.base import logging
from collector.config import InfluxSettings
from collector.points.lineproto import Point
from collector.sink.spool import Spool
from collector.sink.writer import Sink

STREAM_BASE_MS = 1_600_000_000_000
STREAM_SERIES = 3
STREAM_FLUSH = 0.05
# The parent's wait for a worker's first report: its own poll gives up after 30 s.
REPORT_DEADLINE = 60.0


def first_report(worker: subprocess.Popen[bytes], deadline: float = REPORT_DEADLINE) -> bytes:
    """The worker's first line, read with a deadline (the worker is killed if it is silent)."""
    assert worker.stdout is not None
    try:
        return first_line(worker.stdout, deadline)
    except AssertionError:
        worker.kill()
        worker.wait()
        raise


def first_line(reports: BinaryIO, deadline: float = REPORT_DEADLINE) -> bytes:
    """The first line of a worker's reports, read with a deadline."""
    ready, _, _ = select.select([reports], [], [], deadline)
    if not ready:
        raise AssertionError(f"the sink worker said nothing in {deadline} s")
    return reports.readline()


@contextlib.contextmanager
def fork_server() -> Iterator[socket.socket]:
    """A ``sink_worker forks`` process; its control socket. It exits when the socket closes."""
    ours, theirs = socket.socketpair()
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.sink_worker", "forks", str(theirs.fileno())],
        pass_fds=[theirs.fileno()],
        cwd=Path(__file__).parents[1],
    )
    theirs.close()
    ours.settimeout(REPORT_DEADLINE)
    try:
        yield ours
    finally:
        ours.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            raise


@contextlib.contextmanager
def forked_stream(
    control: socket.socket, url: str, spool_dir: Path, run: str, spool_after: float
) -> Iterator[tuple[int, BinaryIO]]:
    """A streaming worker forked by the server: its pid and its reports (read them to
    their end after the kill: then the worker and its spool thread are gone). SIGKILLed
    on the way out if the test did not."""
    read_end, write_end = os.pipe()
    request = f"{url} {spool_dir} {run} {spool_after}".encode()
    socket.send_fds(control, [request], [write_end])
    os.close(write_end)
    answer = b""
    while not answer.endswith(b"\n"):
        chunk = control.recv(64)
        assert chunk, "the fork server is gone"
        answer += chunk
    pid = int(answer)
    with os.fdopen(read_end, "rb") as reports:
        try:
            yield pid, reports
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def main(influx_url: str, spool_dir: Path, count: int) -> None:
    settings = InfluxSettings(
        url=influx_url, database="crash", batch_size=100, buffer_limit=100, flush_interval=0.05
    )
    spool = Spool(spool_dir, max_bytes=10**9)
    send, receive = trio.open_memory_channel[list[Point]](100)
    async with httpx.AsyncClient() as http, trio.open_nursery() as nursery:
        sink = Sink(http, settings, spool, backoff=(0.05, 0.2))
        nursery.start_soon(sink.run, receive)
        for i in range(count):
            await send.send([Point("crash", (("k", "v"),), {"i": i}, 1_000_000 + i)])
        with trio.fail_after(30):
            while sink.buffered_points > 200:  # the rest is on its way to the spool
                await trio.sleep(0.01)
        await trio.sleep(0.2)
        print(spool.points, flush=True)
        await trio.sleep_forever()


def update(run: str, u: int) -> list[Point]:
    """Update ``u`` of run ``run``: one point per series, ``u`` as field and time offset."""
    return [
        Point("stream", (("run", run), ("series", str(s))), {"u": u}, STREAM_BASE_MS + u)
        for s in range(STREAM_SERIES)
    ]


async def stream(
    influx_url: str, spool_dir: Path, run: str, spool_after: float, tls: ssl.SSLContext
) -> None:
    settings = InfluxSettings(
        url=influx_url,
        database="crash",
        batch_size=60,
        flush_interval=STREAM_FLUSH,
        flush_jitter=0.0,
        spool_after=spool_after,
    )
    spool = Spool(spool_dir, max_bytes=10**9)
    send, receive = trio.open_memory_channel[list[Point]](100)
    async with httpx.AsyncClient(verify=tls) as http, trio.open_nursery() as nursery:
        sink = Sink(http, settings, spool, backoff=(0.02, 0.1))
        nursery.start_soon(sink.run, receive)
        u = 0
        while True:
            await send.send(update(run, u))
            print(u, time.monotonic(), flush=True)
            u += 1
            await trio.sleep(0.005)


def serve_forks(control: socket.socket) -> None:
    """Fork a streaming worker per request until the control socket closes; the server
    reaps nothing itself (SIGCHLD ignored: the kernel does)."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    # What each worker's first client would build: httpx imports httpcore then (0.2-0.8 s
    # on a busy box), and loads the CA bundle into a context (up to 0.25 s).
    importlib.import_module("httpcore")
    tls = httpx.create_ssl_context()
    while True:
        request, fds, _, _ = socket.recv_fds(control, 4096, 1)
        if not request:
            return
        (report,) = fds
        url, directory, run, spool_after = request.decode().split()
        pid = os.fork()
        if pid == 0:
            control.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.dup2(report, sys.stdout.fileno())
            os.close(report)
            try:
                trio.run(stream, url, Path(directory), run, float(spool_after), tls)
            except BaseException:  # the child never returns into the server's loop
                traceback.print_exc()
            os._exit(1)
        os.close(report)
        control.sendall(f"{pid}\n".encode())


if __name__ == "__main__":
    logging.configure("critical", stream=sys.stderr)
    if sys.argv[1] == "forks":
        serve_forks(socket.socket(fileno=int(sys.argv[2])))
    else:
        trio.run(main, sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))
