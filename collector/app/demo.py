"""``gate-collector demo``: a simulated Gate, a local InfluxDB and the collector.

Everything runs on this machine from a temporary directory: the Gate simulator
with a few dozen sub-accounts (some disabled; like Gate, ``u`` is the user id,
a few count instead; most accounts change every few seconds, every third one
never does, so Gate never pushes anything for it), Debian's ``influxd`` (or,
when it cannot be had, a stand-in that prints the line protocol it receives),
and the real collector. It shows live progress and, at the end, a per-account
summary read back from InfluxDB: the quiet accounts are there too, because the
collector reads every account by REST snapshot, not only when Gate pushes.
"""

from __future__ import annotations

import gzip
import shutil
import signal
import tempfile
from functools import partial
from pathlib import Path

import httpx
import trio
from pydantic import SecretStr

from collector.app.daemon import Daemon, run_daemon
from collector.app.failures import EXIT_INTERRUPTED
from collector.config import AccountsSettings, GateSettings, InfluxSettings, Settings, StateSettings
from collector.devtools.influxquery import influxql
from collector.devtools.localinflux import InfluxServer, free_port
from collector.devtools.simulator import Simulator
from collector.devtools.simulator.httpserver import HttpRequest, HttpResponse, serve_http
from collector.keys import generate_master_key

PROGRESS_EVERY = 2.0
CHANGE_EVERY = 2.0  # seconds between changes of a busy simulated account
SNAPSHOT_EVERY = 15.0
PRINTED_LINES = 20


def _settings(simulator: Simulator, influx_url: str, state_dir: Path) -> Settings:
    broker = simulator.state.broker
    return Settings(
        gate=GateSettings(
            rest_url=simulator.rest_url,
            ws_url=simulator.ws_url,
            api_key=SecretStr(broker.key),
            api_secret=SecretStr(broker.secret),
        ),
        accounts=AccountsSettings(refresh_interval=30.0, snapshot_interval=SNAPSHOT_EVERY),
        state=StateSettings(dir=str(state_dir), master_key=SecretStr(generate_master_key())),
        influx=InfluxSettings(url=influx_url, database="gate", flush_interval=1.0),
    )


async def _line_printer(nursery: trio.Nursery) -> str:
    """A stand-in for InfluxDB that prints the first lines it is sent."""
    printed = 0

    async def handle(request: HttpRequest) -> HttpResponse:
        nonlocal printed
        body = request.body
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        for line in body.decode().splitlines():
            if printed < PRINTED_LINES:
                print(f"  line protocol: {line}")
                printed += 1
        return HttpResponse(204)

    port = await nursery.start(partial(serve_http, handle))
    return f"http://127.0.0.1:{port}"


async def _progress(daemon: Daemon) -> None:
    while True:
        await trio.sleep(PROGRESS_EVERY)
        print(
            f"  {daemon.supervisor.status_line()}, "
            f"{daemon.sink.stats.points_written} points written",
            flush=True,
        )


async def _summary(influx: InfluxSettings) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        assets = await influxql(
            http,
            influx,
            # u comes only with pushes, total only with snapshots (a REST-only field)
            'SELECT last("unified_account_total_equity") AS equity, count("u") AS pushes, '
            'count("total") AS snapshots FROM gate_unified_assets GROUP BY account',
        )
        detail = await influxql(
            http,
            influx,
            'SELECT count("available") FROM gate_unified_asset_detail GROUP BY account',
        )
    details = {s.tags["account"]: s.values[0][1] for s in detail}
    print(
        f"\n{'ACCOUNT':<10} {'LAST EQUITY':>16} {'PUSHES':>7} {'SNAPSHOTS':>9} "
        f"{'DETAIL POINTS':>14}"
    )
    quiet = 0
    for series in assets:
        account = series.tags["account"]
        _, equity, pushes, snapshots = series.values[0]
        quiet += not pushes
        print(
            f"{account:<10} {equity:>16} {pushes or 0:>7} {snapshots or 0:>9} "
            f"{details.get(account, 0):>14}"
        )
    print(
        f"{len(assets)} accounts with data in InfluxDB database '{influx.database}' "
        f"({quiet} quiet: Gate pushed nothing, their state came by snapshot)"
    )


def _simulator(accounts: int) -> Simulator:
    """A broker with busy, counting and quiet sub-accounts (see the module's docstring)."""
    simulator = Simulator.create(accounts, disabled_every=6)
    simulator.state.change_interval = CHANGE_EVERY
    for i, account in enumerate(simulator.state.accounts.values()):
        if i % 4 == 1:
            account.u_mode = "counter"  # the seed's examples: u counts up
        if i % 3 == 2:
            account.change_interval = 0  # quiet: never changes, never pushed
    return simulator


async def run(accounts: int, duration: float) -> int:
    """The whole demo; 0 when it ran its course, 130 when Ctrl-C stopped it (in order:
    the collector flushes, the summary is read, InfluxDB stops; no process is left)."""
    interrupted = False
    with tempfile.TemporaryDirectory(prefix="gate-collector-demo-") as tmp:
        started: list[InfluxServer] = []  # listed before it starts: stopped whatever happens
        try:
            with trio.open_signal_receiver(signal.SIGINT) as signals:
                async with trio.open_nursery() as nursery:

                    async def cancel_on_ctrl_c() -> None:
                        nonlocal interrupted
                        async for _ in signals:  # outside run_daemon (which stops on its own)
                            interrupted = True
                            nursery.cancel_scope.cancel()

                    nursery.start_soon(cancel_on_ctrl_c)
                    stopped_by = await _run(nursery, Path(tmp), accounts, duration, started)
                    interrupted = interrupted or stopped_by == signal.SIGINT
                    nursery.cancel_scope.cancel()
        finally:
            for server in started:
                server.stop()
    if interrupted:
        print("\ninterrupted: the collector stopped in order, InfluxDB is stopped", flush=True)
    return EXIT_INTERRUPTED if interrupted else 0


async def _run(
    nursery: trio.Nursery, root: Path, accounts: int, duration: float, started: list[InfluxServer]
) -> signal.Signals | None:
    """Start everything, run the collector, print the summary; the signal that stopped it."""
    simulator = _simulator(accounts)
    await simulator.start(nursery)
    print(
        f"simulated Gate: REST {simulator.rest_url}, WebSocket {simulator.ws_url}, "
        f"{accounts} sub-accounts"
    )
    influx_server: InfluxServer | None = None
    if shutil.which("influxd"):
        influx_server = InfluxServer(root / "influxdb", free_port())
        influx_server.root.mkdir()
        started.append(influx_server)
        await trio.to_thread.run_sync(influx_server.start)
        influx_url = influx_server.url
        print(f"InfluxDB 1.x (Debian's influxd) at {influx_url}, data in {root}")
    else:
        influx_url = await _line_printer(nursery)
        print(
            "influxd is not installed (apt-get install influxdb): printing the "
            "line protocol the collector would write instead"
        )
    settings = _settings(simulator, influx_url, root / "state")
    stop = trio.Event()
    if duration > 0:
        nursery.start_soon(_stop_after, duration, stop)
        print(f"running for {duration:g} s (Ctrl-C stops earlier)", flush=True)
    else:
        print("running until Ctrl-C", flush=True)
    stopped_by = await run_daemon(
        settings, stop=stop, on_start=lambda d: nursery.start_soon(_progress, d)
    )
    if influx_server is not None:
        await _summary(settings.influx)
        print(
            f"\nkeys created: {simulator.state.calls['keys_created']}; "
            "dashboards: deploy/grafana (see the README to provision them)"
        )
    return stopped_by


async def _stop_after(seconds: float, stop: trio.Event) -> None:
    await trio.sleep(seconds)
    stop.set()
