"""The sessions floor: N bare trio-websocket TLS connections, subscribed, pinging, idle."""

from __future__ import annotations

import argparse
import json
import ssl
import time
from pathlib import Path

import trio
from trio_websocket import connect_websocket_url

from collector.gate.protocol import ASSET_DETAIL, ping, subscribe
from collector.gate.signing import ApiCredentials

PING_INTERVAL = 15.0


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def main(args: argparse.Namespace) -> None:
    started = time.monotonic()
    keys = list(json.loads(Path(args.keys).read_text()).values())[: args.sessions]
    context = ssl.create_default_context(cafile=args.ca)
    limiter = trio.CapacityLimiter(200)
    connected = 0
    all_up = trio.Event()

    async def session(key: str, secret: str) -> None:
        nonlocal connected
        async with trio.open_nursery() as nursery:
            async with limiter:
                ws = await connect_websocket_url(nursery, args.url, ssl_context=context)
            creds = ApiCredentials(key, secret)
            await ws.send_message(
                subscribe(ASSET_DETAIL, ["!all"], int(time.time()), creds).decode()
            )
            await ws.get_message()
            connected += 1
            if connected == len(keys):
                all_up.set()

            async def pinger() -> None:
                while True:
                    await trio.sleep(PING_INTERVAL)
                    await ws.send_message(ping(int(time.time())).decode())

            nursery.start_soon(pinger)
            while True:
                await ws.get_message()

    async with trio.open_nursery() as nursery:
        for key, secret in keys:
            nursery.start_soon(session, key, secret)
        await all_up.wait()
        up = time.monotonic() - started
        await trio.sleep(args.settle)
        cpu, wall = time.process_time(), time.monotonic()
        await trio.sleep(args.idle)
        idle_cpu = (time.process_time() - cpu) / (time.monotonic() - wall)
        print(
            json.dumps({"sessions": connected, "rss": rss(), "idle_cpu": idle_cpu, "start": up}),
            flush=True,
        )
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--keys", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--sessions", type=int, required=True)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--idle", type=float, default=10.0)
    trio.run(main, parser.parse_args())
