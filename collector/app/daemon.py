"""``gate-collector run``: the supervisor and the sink in one trio nursery.

SIGHUP reloads the configuration (:mod:`collector.app.reload`); a summary line
is logged every minute (:mod:`collector.app.summary`).
SIGTERM or SIGINT cancels the sessions (each unsubscribes and closes), then the
points channel closes and the sink writes what is buffered within its deadline
and spools the rest; ``run_daemon`` returns the signal (the command exits 0 after
SIGTERM, 130 after Ctrl-C's SIGINT). It exits non-zero only on what it
cannot run without: a bad config, a wrong master key, a broker API that refuses
or cannot be reached at start.
"""

from __future__ import annotations

import gc
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trio

from collector.app.reload import Reloader
from collector.app.statelock import hold_state_dir
from collector.app.summary import SUMMARY_INTERVAL, Summary
from collector.base.logging import get_logger
from collector.base.systemd import Notifier
from collector.config import ConfigError, Settings, broker_credentials, http_client
from collector.gate.broker import BrokerClient
from collector.gate.snapshot import SnapshotClient
from collector.keys import KeyStore
from collector.keys.store import fernet_of
from collector.points.lineproto import Bundle
from collector.points.totals import SessionState, TotalsTracker
from collector.session.session import SessionTiming
from collector.session.websocket import fast_queue_note
from collector.sink.database import create_database
from collector.sink.spool import Spool
from collector.sink.writer import Sink
from collector.supervisor.supervisor import StartupError, Supervisor, new_book
from collector.telemetry.http import Observed, open_listeners, serve_endpoint
from collector.telemetry.stats import report_stats
from collector.telemetry.totals import final_totals, run_totals

log = get_logger(__name__)

# Bundles (one per update) between the sessions and the sink: a full channel
# slows the sessions down instead of growing memory.
CHANNEL_SIZE: Final = 10_000
# Every update allocates a few dozen short-lived containers; with Python's default
# (700) the young generation is collected every ~25 updates. Measured: 10 % less
# CPU per update with this threshold (tests/bench/bench_e2e.py).
GC_THRESHOLDS: Final = (50_000, 50, 100)


# Without snapshots, a quiet account has no data for as long as it stays quiet.
STALE_WITHOUT_SNAPSHOTS: Final = 900.0


def stale_after(snapshot_interval: float) -> float:
    """Seconds without data after which an active account counts as stale: three
    snapshot intervals missed (a snapshot brings data even when Gate pushes nothing)."""
    return 3 * snapshot_interval if snapshot_interval > 0 else STALE_WITHOUT_SNAPSHOTS


@dataclass
class Daemon:
    """What a running collector is made of (exposed for the demo and tests)."""

    supervisor: Supervisor
    sink: Sink


async def run_daemon(
    settings: Settings,
    *,
    config_path: Path | None = None,
    summary_interval: float = SUMMARY_INTERVAL,
    notifier: Notifier | None = None,
    timing: SessionTiming | None = None,
    on_start: Callable[[Daemon], None] | None = None,
    stop: trio.Event | None = None,
    stats_interval: float = 10.0,
) -> signal.Signals | None:
    """Run until SIGTERM/SIGINT (or ``stop``); raise StartupError/KeyStoreError on failure,
    StateDirBusy when another collector runs on ``state.dir``.

    Returns the signal that stopped it (None: ``stop``), once everything is flushed."""
    master = settings.state.master_key
    fernet_of(master.get_secret_value() if master else None)  # bad: refused, nothing created
    with hold_state_dir(settings.state.path):
        return await _run(
            settings,
            config_path=config_path,
            summary_interval=summary_interval,
            notifier=notifier,
            timing=timing,
            on_start=on_start,
            stop=stop,
            stats_interval=stats_interval,
        )


async def _run(
    settings: Settings,
    *,
    config_path: Path | None,
    summary_interval: float,
    notifier: Notifier | None,
    timing: SessionTiming | None,
    on_start: Callable[[Daemon], None] | None,
    stop: trio.Event | None,
    stats_interval: float,
) -> signal.Signals | None:
    gc.set_threshold(*GC_THRESHOLDS)
    check_source_addresses(settings.gate.source_addresses)
    notify = notifier or Notifier()
    master = settings.state.master_key
    store = KeyStore.open(settings.state.path, master.get_secret_value() if master else None)
    spool = Spool(settings.state.path / "spool", settings.influx.spool_max_bytes)
    log.info("websocket_queue", **fast_queue_note())  # pinned trio-websocket or public API
    creds = broker_credentials(settings)
    # sessions, snapshots, stats and totals -> sink: one channel, no task in between
    send, receive = trio.open_memory_channel[Bundle](CHANNEL_SIZE)
    book = new_book(settings)  # modes, push times, the unit of pushed rates: one for all
    tracker = TotalsTracker(socket.gethostname(), settings.accounts.shard, book)
    async with (
        http_client(settings.gate.ca_file or True) as gate_http,
        http_client(timeout=settings.influx.timeout) as influx_http,
    ):
        broker = BrokerClient(gate_http, creds, base_url=settings.gate.rest_url)
        snapshots = SnapshotClient(
            gate_http, settings.gate.rest_url, lambda: time.time() + broker.clock_skew
        )
        supervisor = Supervisor(
            settings,
            broker,
            store,
            send,
            notifier=notify,
            timing=timing,
            snapshot_client=snapshots,
            totals=tracker,
            book=book,
        )
        sink = Sink(influx_http, settings.influx, spool)
        if on_start is not None:
            on_start(Daemon(supervisor, sink))
        listeners = await _listen(settings.http.listen)
        endpoint = trio.CancelScope()
        async with trio.open_nursery() as nursery:
            # In the background: a hanging InfluxDB must not hold the sessions back
            # (a write's 404 creates the database later anyway).
            totals, stats, setup = trio.CancelScope(), trio.CancelScope(), trio.CancelScope()
            nursery.start_soon(_in_scope, setup, create_database(influx_http, settings.influx))
            nursery.start_soon(sink.run, receive)
            if stats_interval > 0:
                nursery.start_soon(
                    _run_totals,
                    totals,
                    tracker,
                    send.clone(),
                    supervisor.account_session_states,
                    stats_interval,
                )
                nursery.start_soon(
                    _report_stats,
                    stats,
                    send.clone(),
                    [supervisor.stats_fields, sink.counters],
                    settings.accounts.shard,
                    stats_interval,
                )
            if listeners:
                observed = Observed(
                    supervisor,
                    lambda: {**supervisor.stats_fields(), **sink.counters()},  # collector_stats
                    lambda: {"stored": len(store)},
                    shard=settings.accounts.shard,
                    instance=socket.gethostname(),
                    stall_seconds=settings.http.stall_seconds,
                    sink=lambda: sink.stats,  # read live, not through the sink
                    stale_after=stale_after(settings.accounts.snapshot_interval),
                    gate_facts=supervisor.gate_facts,
                )
                nursery.start_soon(_serve_endpoint, observed, listeners, endpoint)
            try:
                stopped_by = await _until_stopped(
                    supervisor,
                    stop,
                    [
                        *_reloader(config_path, settings, supervisor, sink),
                        Summary(supervisor, sink, spool, summary_interval).run,
                    ],
                )
            finally:
                stats.cancel()
                totals.cancel()
                setup.cancel()
                notify.stopping()
                endpoint.cancel()
                log.info("stopping", status=supervisor.status_line())
                try:
                    await send.send(final_totals(tracker))  # the sessions are stopped by now
                finally:
                    await send.aclose()  # the sink drains, spools the rest and returns
    notify.close()
    log.info("stopped", points_written=sink.stats.points_written, spooled_bytes=spool.bytes)
    return stopped_by


async def _in_scope(scope: trio.CancelScope, work: Awaitable[object]) -> None:
    """Await ``work`` until ``scope`` is cancelled (a task stopping with the sessions)."""
    with scope:
        await work


async def _run_totals(
    scope: trio.CancelScope,
    tracker: TotalsTracker,
    send: trio.MemorySendChannel[Bundle],
    sessions: Callable[[], Mapping[str, SessionState]],
    interval: float,
) -> None:
    """The shard's totals into the points channel every ``interval``, until stopped."""
    with scope:
        await run_totals(tracker, send, sessions, interval)


async def _report_stats(
    scope: trio.CancelScope,
    send: trio.MemorySendChannel[Bundle],
    sources: list[Callable[[], dict[str, float | int]]],
    shard: str,
    interval: float,
) -> None:
    """``collector_stats`` into the points channel, like any other point, until stopped."""
    with scope:
        await report_stats(
            send, sources, instance=socket.gethostname(), shard=shard, interval=interval
        )


async def _listen(listen: str) -> list[trio.SocketListener]:
    """Bind the endpoint before anything runs, so a taken port is a plain start error."""
    if not listen:
        return []
    try:
        return await open_listeners(listen)
    except OSError as exc:  # a local problem (exit 2), not Gate's
        raise ConfigError(
            f"cannot listen on http.listen = {listen!r}: {exc.strerror or exc}; "
            'choose a free port or set it to "" to turn the endpoint off'
        ) from None


def check_source_addresses(addresses: Sequence[str]) -> None:
    """ConfigError naming the first of ``addresses`` that is not an address of this host
    (else every session would fail to bind and reconnect forever)."""
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((address, 0))
        except OSError as exc:
            raise ConfigError(
                f"gate.source_addresses: {address} is not an address of this host "
                f"({exc.strerror or exc}); list only this host's IPs (ip -br addr)"
            ) from None


async def _serve_endpoint(
    observed: Observed, listeners: list[trio.SocketListener], scope: trio.CancelScope
) -> None:
    with scope:
        await serve_endpoint(observed, listeners)


def _reloader(
    config_path: Path | None, settings: Settings, supervisor: Supervisor, sink: Sink
) -> list[Callable[[], Awaitable[None]]]:
    """The SIGHUP watcher, when there is a file to read again."""
    if config_path is None:
        return []

    async def apply_sink(new: Settings) -> None:
        await sink.retarget(new.influx)

    return [Reloader(config_path, settings, supervisor.reload, apply_sink).watch]


async def _until_stopped(
    supervisor: Supervisor,
    stop: trio.Event | None,
    extras: Sequence[Callable[[], Awaitable[None]]] = (),
) -> signal.Signals | None:
    """Run the supervisor (and ``extras``, e.g. SIGHUP) until a signal (returned) or ``stop``."""
    failure: StartupError | None = None
    received: signal.Signals | None = None
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def watch_signals() -> None:
                nonlocal received
                async for signum in signals:
                    received = signal.Signals(signum)
                    log.info("signal", signal=received.name)
                    nursery.cancel_scope.cancel()
                    return

            async def watch_stop() -> None:
                if stop is not None:
                    await stop.wait()
                    nursery.cancel_scope.cancel()

            nursery.start_soon(watch_signals)
            nursery.start_soon(watch_stop)
            for extra in extras:
                nursery.start_soon(extra)
            try:
                await supervisor.run()
            except StartupError as exc:  # raised plainly, not inside an exception group
                failure = exc
                nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return received
