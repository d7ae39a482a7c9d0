"""The simulator in its own process, for benchmarks.

Prints one JSON line when listening: URLs, the broker credentials directory and a
file with one ready key per account (for the floor and baseline clients). On
SIGTERM it writes its counters to ``--stats`` and exits.
"""

from __future__ import annotations

import argparse
import json
import signal
import ssl
from pathlib import Path

import trio
import trustme

from collector.app.commands import write_credentials
from collector.base import logging
from collector.devtools.simulator import Simulator


async def announce_burst(sim: Simulator, path: Path) -> None:
    """Write time.monotonic() of the first burst frame to ``path`` once it is sent."""
    while sim.state.burst_started_monotonic is None:
        await trio.sleep(0.005)
    await trio.Path(path).write_text(repr(sim.state.burst_started_monotonic))


def stats(sim: Simulator) -> dict[str, object]:
    state = sim.state
    busy = (
        (state.burst_finished or 0) - (state.burst_started or 0)
        if state.burst_started is not None
        else 0.0
    )
    return {
        "burst_sent": state.burst_sent,
        "burst_seconds": busy,
        "pushed": sum(state.pushed.values()),
        "calls": dict(state.calls),
        "keys_created": state.calls["keys_created"],
        "subscribed": sum(state.active.values()),
        "connections": state.ws_connections,
    }


async def write_stats(sim: Simulator, path: Path) -> None:
    """Keep the stats file current (the harness reads it while a run goes on).

    Written beside and renamed over: a reader never sees a truncated file (with
    10,000 sessions starting, the writing thread can wait seconds for the GIL
    between truncating and writing).
    """
    partial = trio.Path(path.with_name(path.name + ".new"))
    while True:
        await partial.write_text(json.dumps(stats(sim)))
        await partial.replace(path)
        await trio.sleep(0.1)


async def main(args: argparse.Namespace) -> None:
    sim = Simulator.create(accounts=args.accounts)
    sim.state.rate_limit = args.rate_limit
    sim.state.burst = args.burst
    sim.state.push_interval = args.push_interval
    if args.tls:
        ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        ca.cert_pem.write_to_path(str(args.dir / "ca.pem"))
        sim.ssl_context = context
    keys = {}
    for account in sim.state.accounts.values():
        key = sim.state.create_key(account.gate_id, "bench-client", [], [])
        keys[account.gate_id] = [key.key, key.secret]
    sim.state.calls.clear()
    (args.dir / "keys.json").write_text(json.dumps(keys))
    write_credentials(args.dir / "creds", sim.state.broker)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await sim.start(nursery)
            nursery.start_soon(announce_burst, sim, args.dir / "burst-started")
            nursery.start_soon(write_stats, sim, args.stats)
            print(json.dumps({"rest_url": sim.rest_url, "ws_url": sim.ws_url}), flush=True)
            async for _ in signals:
                break
            args.stats.write_text(json.dumps(stats(sim)))
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--burst", type=int, default=0)
    parser.add_argument("--push-interval", type=float, default=1.0)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--rate-limit", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--stats", type=Path, required=True)
    logging.configure("warning")
    trio.run(main, parser.parse_args())
