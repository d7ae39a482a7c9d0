"""The floor: bare trio-websocket sessions that only receive and count frames."""

from __future__ import annotations

import argparse
import json
import ssl
import time

import trio
from trio_websocket import open_websocket_url

from collector.gate.protocol import ASSET_DETAIL, subscribe
from collector.gate.signing import ApiCredentials


async def main(args: argparse.Namespace) -> None:
    keys = json.loads(open(args.keys).read())  # noqa: SIM115
    context = ssl.create_default_context(cafile=args.ca) if args.ca else None
    counted = 0
    first: float | None = None
    last = 0.0
    done = trio.Event()
    cpu_at_last = [0.0]

    async def session(key: str, secret: str) -> None:
        nonlocal counted, first, last
        async with open_websocket_url(args.url, ssl_context=context) as ws:
            request = subscribe(
                ASSET_DETAIL, ["!all"], int(time.time()), ApiCredentials(key, secret)
            )
            await ws.send_message(request.decode())
            while True:
                await ws.get_message()
                now = time.monotonic()
                if first is None:
                    first = now
                counted += 1
                last = now
                if counted >= args.expect and not done.is_set():
                    cpu_at_last[0] = time.process_time()  # before closing the sessions
                    done.set()

    cpu = time.process_time()
    async with trio.open_nursery() as nursery:
        for key, secret in keys.values():
            nursery.start_soon(session, key, secret)
        await done.wait()
        nursery.cancel_scope.cancel()
    result = {"frames": counted, "end": last, "cpu_seconds": time.process_time() - cpu}
    print(json.dumps({**result, "cpu_total": cpu_at_last[0] or time.process_time()}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--keys", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--ca")
    trio.run(main, parser.parse_args())
