"""A competent small trio client: what a careful engineer writes in ~150 lines.

trio-websocket sessions (one per account), orjson, the checks that matter (the
channel and event, ``u`` an int, every value a number), line text built directly
(no point objects), batches of 5,000 lines or 1 s, gzip level 1, one httpx
client writing InfluxDB 1.x (``/write?precision=ms``). No reconnects, no key
handling, no spool, no metrics: the collector's CPU per update against this is
the price of everything else it does.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from pathlib import Path

import httpx
import orjson
import trio
from trio_websocket import open_websocket_url

from collector.gate.protocol import ASSET_DETAIL, subscribe
from collector.gate.signing import ApiCredentials

MEASUREMENT = "competent_asset_detail"
FIELDS = {"a": "available", "f": "freeze", "e": "equity", "tl": "total_liab", "b": "balance"}
BATCH = 5000


def number(text: object) -> str:
    """The value as line-protocol float text; ValueError when it is not a number."""
    if isinstance(text, str):
        float(text)  # the check; Gate's decimal text is already valid line protocol
        return text
    if isinstance(text, int | float) and not isinstance(text, bool):
        return repr(float(text))
    raise ValueError(f"not a number: {text!r}")


def lines_of(account: str, message: bytes | str) -> list[str]:
    """Line text for one ``asset_detail`` update; nothing for anything else."""
    frame = orjson.loads(message)
    if frame.get("channel") != ASSET_DETAIL or frame.get("event") != "update":
        return []
    result = frame["result"]
    u, stamp = result["u"], frame["time_ms"]
    if type(u) is not int or type(stamp) is not int:
        raise ValueError("u and time_ms must be integers")
    out = []
    for currency, values in result["dts"].items():
        fields = ",".join(f"{FIELDS.get(k, k)}={number(v)}" for k, v in values.items())
        out.append(f"{MEASUREMENT},account={account},currency={currency} {fields},u={u}i {stamp}")
    return out


class Writer:
    """Batches lines and writes them, gzip level 1, one request at a time."""

    def __init__(self, url: str, db: str) -> None:
        self.client = httpx.AsyncClient(base_url=url, timeout=30)
        self.params = {"db": db, "precision": "ms"}
        self.lines: list[str] = []
        self.full = trio.Event()
        self.lock = trio.Lock()  # one request at a time; the last flush waits for the one out

    def add(self, lines: list[str]) -> None:
        self.lines += lines
        if len(self.lines) >= BATCH:
            self.full.set()

    async def flush(self) -> None:
        async with self.lock:
            await self._flush()

    async def _flush(self) -> None:
        lines, self.lines = self.lines, []
        self.full = trio.Event()
        if not lines:
            return
        compressor = zlib.compressobj(1, wbits=31)
        body = compressor.compress("\n".join(lines).encode()) + compressor.flush()
        response = await self.client.post(
            "/write", params=self.params, content=body, headers={"Content-Encoding": "gzip"}
        )
        response.raise_for_status()

    async def run(self) -> None:
        while True:
            with trio.move_on_after(1.0):
                await self.full.wait()
            await self.flush()


async def main(args: argparse.Namespace) -> None:
    keys = json.loads(Path(args.keys).read_text())
    writer = Writer(args.influx, args.db)
    updates = 0
    done = trio.Event()

    async def session(account: str, key: str, secret: str) -> None:
        nonlocal updates
        async with open_websocket_url(args.url) as ws:
            creds = ApiCredentials(key, secret)
            await ws.send_message(subscribe(ASSET_DETAIL, ["!all"], int(time.time()), creds))
            while True:
                lines = lines_of(account, await ws.get_message())
                if lines:
                    writer.add(lines)
                    updates += 1
                    if updates >= args.expect:
                        done.set()

    cpu = time.process_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        for account, (key, secret) in keys.items():
            nursery.start_soon(session, account, key, secret)
        with trio.fail_after(args.timeout):
            await done.wait()
        await writer.flush()
        end, cpu_at_end = time.monotonic(), time.process_time()  # before closing sessions
        nursery.cancel_scope.cancel()
    result = {"updates": updates, "end": end, "cpu_seconds": time.process_time() - cpu}
    print(json.dumps({**result, "cpu_total": cpu_at_end}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--keys", required=True)
    parser.add_argument("--influx", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=1200)
    trio.run(main, parser.parse_args())
