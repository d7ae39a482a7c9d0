"""Honest throughput (issue 16): a fast pre-built sender, varying values, every point checked.

Three benchmarks, each writing its own section of RESULTS.md:

* burst: 100 accounts, every stream at once; the network floor (raw TCP reader),
  the trio-websocket floor (count only), the collector (-> InfluxDB 1.x), a
  competent ~150-line trio client (-> InfluxDB 1.x) and the naive baseline
  (-> VictoriaMetrics v2), one after the other against the same bytes;
* one-core saturation: the client pinned (``taskset -c 1``), 1,000 and 5,000
  accounts in a burst: the updates/s one core sustains, collector vs floor;
* paced: a fixed total rate (2,000 updates/s) spread evenly over 100 / 1,000 /
  5,000 accounts, one frame per read: CPU µs per update, collector vs floor.

The sender is :mod:`tests.bench.feeder` (frames built before the clock starts,
several processes); its own rate is reported beside every row it fed. The
collector runs as ``gate-collector run`` (REST against the simulator, the
WebSocket against the feeder). Every point written is counted back and the sums
of ``available`` and ``equity`` compared with what was sent. Nothing here asserts
a time; the machine's other load is recorded per benchmark.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from collector.keys import generate_master_key
from tests.bench.feeder import Feeder, Streams, ack_frame, build_streams, raise_fd_limit
from tests.bench.harness import (
    ROOT,
    Load,
    SimServer,
    collector,
    cpu_seconds,
    record,
    schedstat,
    sim_server,
    wait_until,
)
from tests.servers import (
    InfluxServer,
    VictoriaMetrics,
    free_port,
    influx_server,
    victoria_metrics,
)

BURST_ACCOUNTS = int(os.environ.get("BENCH_TP_ACCOUNTS", "100"))
BURST_PER_ACCOUNT = int(os.environ.get("BENCH_TP_BURST", "1000"))
# The naive baseline is slow (~1 ms of CPU per update): a smaller stream of the same kind.
BASELINE_PER_ACCOUNT = int(os.environ.get("BENCH_BASELINE_BURST", "200"))
SAT_ACCOUNTS = [int(n) for n in os.environ.get("BENCH_SAT_ACCOUNTS", "1000,5000").split(",")]
SAT_UPDATES = int(os.environ.get("BENCH_SAT_UPDATES", "60000"))
PACED_ACCOUNTS = [
    int(n) for n in os.environ.get("BENCH_PACED_ACCOUNTS", "100,1000,5000").split(",")
]
PACED_RATE = float(os.environ.get("BENCH_PACED_RATE", "2000"))
PACED_WARMUP = float(os.environ.get("BENCH_PACED_WARMUP", "5"))
PACED_WINDOW = float(os.environ.get("BENCH_PACED_WINDOW", "15"))
# A collector run that has not written every point by then is recorded as stalled.
WRITE_TIMEOUT = float(os.environ.get("BENCH_WRITE_TIMEOUT", "240"))
WORKERS = int(os.environ.get("BENCH_FEEDER_WORKERS", "2"))
PIN = ("taskset", "-c", "1")
METRICS_PORT = free_port()  # the collector's /metrics: its own count of frames read
ACK = len(ack_frame("unified.asset_detail"))

raise_fd_limit(65536)
pytestmark = pytest.mark.timeout(3600)


# --- servers and processes ------------------------------------------------------------


@contextmanager
def rest_sim(directory: Path, accounts: int) -> Iterator[SimServer]:
    """The simulator for REST only (keys, sub-accounts, snapshots); it pushes nothing."""
    with sim_server(directory, "--accounts", str(accounts), "--push-interval", "100000") as sim:
        yield sim


@contextmanager
def feeder(streams: Streams, mode: str = "burst", rate: float = 0.0) -> Iterator[Feeder]:
    sender = Feeder(streams, mode, rate, WORKERS)
    try:
        yield sender
    finally:
        sender.close()


def client(module: str, *args: str, pin: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*(PIN if pin else ()), sys.executable, "-m", module, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def result_of(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = process.communicate(timeout=1800)
    assert process.returncode == 0, out
    data: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return data


def go(sender: Feeder, accounts: int, pid: int) -> tuple[float, float]:
    """Wait for every subscription, then start the frames: (start, client CPU at start)."""
    wait_until(lambda: sender.subscribed >= accounts, timeout=900, interval=0.05)
    time.sleep(0.5)
    cpu = cpu_seconds(pid)
    return sender.start(), cpu


# --- InfluxDB / VictoriaMetrics checks -------------------------------------------------


def influx_totals(influx: InfluxServer, db: str, measurement: str) -> tuple[int, float, float]:
    """count(u), sum(available), sum(equity) of the pushed points (they carry ``u``)."""
    body = influx.query(
        f'SELECT count("u"), sum("available"), sum("equity") FROM "{measurement}" WHERE "u" >= 0',
        db=db,
    )
    series = body["results"][0].get("series")  # type: ignore[index]
    if not series:
        return 0, 0.0, 0.0
    _, count, available, equity = series[0]["values"][0]
    return int(count or 0), float(available or 0.0), float(equity or 0.0)


def vm_value(vm: VictoriaMetrics, query: str) -> float:
    response = httpx.get(f"{vm.url}/api/v1/query", params={"query": query}, timeout=30)
    result = response.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def vm_totals(vm: VictoriaMetrics, metric: str) -> tuple[int, float, float]:
    """The baseline's points in VictoriaMetrics (it keeps Gate's short field names)."""
    httpx.get(f"{vm.url}/internal/force_flush", timeout=30)
    count = vm_value(vm, f"sum(count_over_time({metric}_u[1d]))")
    available = vm_value(vm, f"sum(sum_over_time({metric}_a[1d]))")
    equity = vm_value(vm, f"sum(sum_over_time({metric}_e[1d]))")
    return int(count), available, equity


def checked(streams: Streams, totals: tuple[int, float, float]) -> str:
    """'points written / sent, sums ok' (asserted after the table is recorded)."""
    count, available, equity = totals
    ok = math.isclose(available, streams.available_sum, rel_tol=1e-9) and math.isclose(
        equity, streams.equity_sum, rel_tol=1e-9
    )
    return f"{count:,} / {streams.points:,}, sums {'equal' if ok else 'DIFFER'}"


# --- the runs ---------------------------------------------------------------------------


def collector_toml(accounts: int, influx: InfluxServer, db: str, metrics_port: int) -> str:
    # One loopback address: lift Gate's per-IP cap. Snapshots (one REST call per
    # account when it subscribes) are let through fast and finish before the clock.
    return (
        f"max_connections_per_ip = {accounts + 10}\n[accounts]\nsnapshot_rate = 200\n"
        f'[influx]\nurl = "{influx.url}"\ndatabase = "{db}"\n'
        f'[http]\nlisten = "127.0.0.1:{metrics_port}"\n'
    )


_FRAMES: Final = re.compile(r"^gate_collector_frames_received(?:_total)? (\S+)$", re.MULTILINE)


def frames_received(port: int) -> int:
    """The collector's own count of frames read (its /metrics)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    found = _FRAMES.search(text)
    assert found is not None, text[:500]
    return int(float(found.group(1)))


@contextmanager
def collector_on(
    tmp: Path, accounts: int, influx: InfluxServer, db: str, sender: Feeder, pin: bool = False
) -> Iterator[tuple[SimServer, subprocess.Popen[bytes]]]:
    """The collector: REST from the simulator, the WebSocket from ``sender``.

    A first start against a silent feeder (no frames) provisions every key and is
    stopped once all are subscribed; the measured run is a restart with those
    keys, the steady state (the first start's key provisioning and retiring is REST
    work the measurement is not about, and under load it stalled the collector).
    """
    influx.create_database(db)
    with rest_sim(tmp / "sim", accounts) as sim:
        key = generate_master_key()
        toml = collector_toml(accounts, influx, db, METRICS_PORT)
        with (
            feeder(build_streams(accounts, 0)) as silent,
            collector(tmp / "c", dataclasses.replace(sim, ws_url=silent.url), toml, key),
        ):
            wait_until(lambda: silent.subscribed >= accounts, timeout=900)
        snapshots = sim.stats()["calls"].get("GET unified_accounts", 0)
        fed = dataclasses.replace(sim, ws_url=sender.url)
        with collector(tmp / "c", fed, toml, key, PIN if pin else ()) as process:

            def up() -> bool:
                assert process.poll() is None, (tmp / "c" / "collector.log").read_text()[-2000:]
                return sender.subscribed >= accounts

            wait_until(up, timeout=900, interval=0.1)
            wait_until(
                lambda: sim.stats()["calls"].get("GET unified_accounts", 0) >= snapshots + accounts,
                timeout=600,
                interval=0.2,
            )
            time.sleep(2)  # the snapshots' points are written; start-up work settles
            yield sim, process


def burst_collector(
    tmp: Path, streams: Streams, accounts: int, influx: InfluxServer, db: str, pin: bool = False
) -> dict[str, Any]:
    with (
        feeder(streams) as sender,
        collector_on(tmp, accounts, influx, db, sender, pin) as (_, process),
    ):
        assert influx.process is not None
        cpu0, influx0 = cpu_seconds(process.pid), cpu_seconds(influx.process.pid)
        sched0, frames0 = schedstat(process.pid), frames_received(METRICS_PORT)
        start = sender.start()
        stalled = False
        read: list[float] = []  # when the collector had read every update

        def written() -> bool:
            if not read and frames_received(METRICS_PORT) - frames0 >= streams.updates:
                read.append(time.monotonic())
            return influx_totals(influx, db, "gate_unified_asset_detail")[0] >= streams.points

        try:  # polled 4 times a second: each count scans what is written so far
            end = wait_until(written, timeout=WRITE_TIMEOUT, interval=0.25)
        except TimeoutError:  # recorded as such (and the run fails after the table)
            end, stalled = time.monotonic(), True
        cpu = cpu_seconds(process.pid) - cpu0
        sched = [b - a for a, b in zip(sched0, schedstat(process.pid), strict=True)]
        influx_cpu = cpu_seconds(influx.process.pid) - influx0
        time.sleep(1)  # anything beyond would be a duplicate: let it show
        totals = influx_totals(influx, db, "gate_unified_asset_detail")
        return {
            "seconds": end - start,
            "cpu": cpu,
            "totals": totals,
            "feeder": sender.report(),
            "stalled": stalled,
            "on_cpu": sched[0] / (end - start),
            "run_queue": sched[1] / (end - start),
            "influx_cores": influx_cpu / (end - start),
            "read_seconds": (read[0] if read else end) - start,
        }


def burst_counting(
    tmp: Path, streams: Streams, accounts: int, module: str, pin: bool = False
) -> dict[str, Any]:
    """The floor (trio-websocket) or the raw reader: count what arrives, nothing else."""
    with rest_sim(tmp, accounts) as sim, feeder(streams) as sender:
        keys = str(sim.directory / "keys.json")
        if module == "tests.bench.raw_client":
            args = ["--expect-bytes", str(streams.bytes + accounts * ACK)]
        else:  # the floor counts every message, the subscribe acks too
            args = ["--expect", str(streams.updates + accounts)]
        process = client(module, "--url", sender.url, "--keys", keys, *args, pin=pin)
        start, cpu0 = go(sender, accounts, process.pid)
        out = result_of(process)
        cpu = out["cpu_total"] - cpu0  # from the go to the last frame counted
        return {"seconds": out["end"] - start, "cpu": cpu, "feeder": sender.report()}


def burst_competent(
    tmp: Path, streams: Streams, accounts: int, influx: InfluxServer
) -> dict[str, Any]:
    influx.create_database("competent")
    with rest_sim(tmp, accounts) as sim, feeder(streams) as sender:
        keys = str(sim.directory / "keys.json")
        process = client(
            "tests.bench.competent_client",
            *("--url", sender.url, "--keys", keys, "--influx", influx.url),
            *("--db", "competent", "--expect", str(streams.updates)),
        )
        start, cpu0 = go(sender, accounts, process.pid)
        out = result_of(process)
    totals = influx_totals(influx, "competent", "competent_asset_detail")
    return {"seconds": out["end"] - start, "cpu": out["cpu_total"] - cpu0, "totals": totals}


def burst_baseline(
    tmp: Path, streams: Streams, accounts: int, vm: VictoriaMetrics
) -> dict[str, Any]:
    with rest_sim(tmp, accounts) as sim, feeder(streams) as sender:
        keys = str(sim.directory / "keys.json")
        process = client(
            "tests.bench.baseline_client",
            *("--url", sender.url, "--keys", keys, "--influx", vm.url),
            "--expect",
            str(streams.updates),
        )
        start, _ = go(sender, accounts, process.pid)
        out = result_of(process)
    landed = wait_until(
        lambda: vm_totals(vm, "baseline_asset_detail")[0] >= streams.points,
        timeout=600,
        interval=0.1,
    )
    totals = vm_totals(vm, "baseline_asset_detail")
    return {"seconds": landed - start, "cpu": out["cpu_seconds"], "totals": totals}


def per_update(run: dict[str, Any], streams: Streams) -> float:
    """CPU µs per update of one run."""
    return float(run["cpu"]) / streams.updates * 1e6


def row(name: str, streams: Streams, run: dict[str, Any], checks: str = "-") -> str:
    rate = streams.updates / run["seconds"]
    fed = f"{run['feeder']['rate']:,.0f}" if "feeder" in run else "-"
    return (
        f"| {name} | {streams.updates:,} | {rate:,.0f} | {per_update(run, streams):,.1f} | "
        f"{checks} | {fed} |"
    )


def influx_bound(run: dict[str, Any]) -> bool:
    """The collector had read everything well before InfluxDB had it all."""
    return bool(run["seconds"] - run["read_seconds"] > 0.25 * run["seconds"])


def where_the_collector_waited(run: dict[str, Any], streams: Streams, floor_rate: float) -> str:
    """What bounds a writer's throughput: its CPU, a CPU to run on, or InfluxDB."""
    on_cpu, queue = run["on_cpu"], run["run_queue"]
    read, total = run["read_seconds"], run["seconds"]
    read_rate = streams.updates / read
    return (
        f"The collector had read every update after {read:.1f} s ({read_rate:,.0f} updates/s, "
        f"{read_rate / floor_rate:.2f}x the floor's rate; its own `frames_received`) and "
        f"InfluxDB had every point after {total:.1f} s: for the last "
        f"{(total - read) / total:.0%} of the window the collector waited for InfluxDB"
        f"{' (InfluxDB is the bound)' if influx_bound(run) else ''}. Over the "
        f"whole window its main thread ran {on_cpu:.0%} of the time, waited for a CPU (run "
        f"queue) {queue:.0%} and slept {max(0.0, 1 - on_cpu - queue):.0%}; InfluxDB used "
        f"{run['influx_cores']:.2f} cores beside it (`/proc/<pid>/schedstat`, "
        "`/proc/<pid>/stat`)."
    )


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def test_burst(tmp_path: Path) -> None:
    load = Load.now()
    streams = build_streams(BURST_ACCOUNTS, BURST_PER_ACCOUNT)
    small = build_streams(BURST_ACCOUNTS, BASELINE_PER_ACCOUNT, seed=17)
    n = streams.updates
    with influx_server(tmp_path / "influx") as influx, victoria_metrics(tmp_path / "vm") as vm:
        raw = burst_counting(tmp_path / "raw", streams, BURST_ACCOUNTS, "tests.bench.raw_client")
        floor = burst_counting(
            tmp_path / "floor", streams, BURST_ACCOUNTS, "tests.bench.floor_client"
        )
        ours = burst_collector(tmp_path / "ours", streams, BURST_ACCOUNTS, influx, "burst")
        competent = burst_competent(tmp_path / "competent", streams, BURST_ACCOUNTS, influx)
        base = burst_baseline(tmp_path / "base", small, BURST_ACCOUNTS, vm)
    floor_rate, ours_rate = n / floor["seconds"], n / ours["seconds"]
    cpu_ratio = per_update(ours, streams) / per_update(floor, streams)
    ours_us = per_update(ours, streams)
    fast_enough = ours_rate >= 0.5 * floor_rate
    bound = influx_bound(ours)
    lines = [
        f"{n:,} `unified.asset_detail` updates ({streams.points:,} points, 3 currencies, "
        f"every value different) for {BURST_ACCOUNTS} accounts, all streams at once from the "
        f"pre-built feeder ({WORKERS} processes; {streams.payload_bytes / n:,.0f} bytes of JSON "
        "per update). Updates/s: first frame sent to the last one counted (floors) or to the "
        "last point counted back in the database (writers: this includes their last flush, "
        "up to 1 s). CPU: the client process only, from the first frame to its end. Feeder "
        "rate: frames it handed to the kernel per second in that run (the raw reader shows "
        "how fast it can go). The naive baseline gets a smaller stream of the same kind.",
        "",
        "| client | updates | updates/s | CPU µs/update | points written / sent, sums checked "
        "| feeder frames/s |",
        "|---|---|---|---|---|---|",
        row("raw TCP reader (network floor, no WebSocket)", streams, raw),
        row("floor: trio-websocket, count only", streams, floor),
        row("collector -> InfluxDB 1.x", streams, ours, checked(streams, ours["totals"])),
        row(
            "competent trio client (~150 lines) -> InfluxDB 1.x",
            streams,
            competent,
            checked(streams, competent["totals"]),
        ),
        row(
            "naive baseline (websocket-client threads + WriteApi) -> VictoriaMetrics v2",
            small,
            base,
            checked(small, base["totals"]),
        ),
        "",
        f"- collector / floor throughput: {ours_rate / floor_rate:.2f}; CPU per update "
        f"{cpu_ratio:.2f}x the floor's. Goal: throughput >= 0.5x, or where InfluxDB is the "
        f"bound, CPU per update <= 2x: {verdict(fast_enough or (bound and cpu_ratio <= 2))}"
        f" (throughput {verdict(fast_enough)}; InfluxDB the bound: {'yes' if bound else 'no'}"
        f"; CPU {verdict(cpu_ratio <= 2)}).",
        f"- collector CPU per update / competent client's: "
        f"{ours_us / per_update(competent, streams):.2f}; / naive baseline's: "
        f"{ours_us / per_update(base, small):.2f}.",
        f"- floor / raw reader throughput: {floor_rate / (n / raw['seconds']):.2f} "
        "(what the WebSocket library costs before any work).",
        f"- {where_the_collector_waited(ours, streams, floor_rate)}",
        "",
        load.describe(),
    ]
    record("Throughput burst", "\n".join(lines))
    for sent, run in ((streams, ours), (streams, competent), (small, base)):
        assert run["totals"][0] == sent.points
        assert math.isclose(run["totals"][1], sent.available_sum, rel_tol=1e-9)
        assert math.isclose(run["totals"][2], sent.equity_sum, rel_tol=1e-9)


def test_one_core_saturation(tmp_path: Path) -> None:
    load = Load.now()
    lines = [
        f"The client process pinned to one core (`taskset -c 1`), a burst of about "
        f"{SAT_UPDATES:,} updates spread over every account, all at once (feeder, simulator "
        "and InfluxDB unpinned). Updates/s: first frame to the last counted (floor) or the "
        "last point counted back in InfluxDB (collector); 'read': to the last update the "
        "collector read (its own `frames_received`); 'core busy' is the pinned "
        "process's CPU over that time, so updates/s / core busy is what the core would "
        "sustain if it were the only bound.",
        "",
        "| accounts | client | updates/s | read, updates/s | core busy | "
        "updates/s per busy core | CPU µs/update | points written / sent | feeder frames/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    checks = []
    goal = ""
    with influx_server(tmp_path / "influx") as influx:
        for accounts in SAT_ACCOUNTS:
            streams = build_streams(accounts, max(1, SAT_UPDATES // accounts))
            n = streams.updates
            runs = {
                "floor": burst_counting(
                    tmp_path / f"f{accounts}", streams, accounts, "tests.bench.floor_client", True
                ),
                "collector": burst_collector(
                    tmp_path / f"c{accounts}", streams, accounts, influx, f"sat{accounts}", True
                ),
            }
            for name, run in runs.items():
                busy = run["cpu"] / run["seconds"]
                written = checked(streams, run["totals"]) if "totals" in run else "-"
                if run.get("stalled"):
                    written += f" (**unfinished**: not all written after {run['seconds']:.0f} s)"
                read = n / run.get("read_seconds", run["seconds"])
                lines.append(
                    f"| {accounts:,} | {name} | {n / run['seconds']:,.0f} | {read:,.0f} | "
                    f"{busy:.0%} | "
                    f"{n / run['cpu']:,.0f} | {run['cpu'] / n * 1e6:,.1f} | {written} | "
                    f"{run['feeder']['rate']:,.0f} |"
                )
            ours = runs["collector"]
            checks.append((streams, ours["totals"]))
            if accounts == 1000:
                rate = n / ours["seconds"]
                goal = (
                    f"Goal: one core sustains >= 10,000 updates/s at 1,000 accounts: "
                    f"{verdict(rate >= 10_000)} ({rate:,.0f} measured; "
                    f"{n / ours['cpu']:,.0f} per busy core)."
                )
    lines += ["", goal, "", load.describe()]
    record("Throughput one core", "\n".join(lines))
    for streams, totals in checks:
        assert totals[0] == streams.points
        assert math.isclose(totals[1], streams.available_sum, rel_tol=1e-9)


def paced_streams(accounts: int) -> Streams:
    seconds = PACED_WARMUP + PACED_WINDOW + 2
    return build_streams(accounts, math.ceil(PACED_RATE * seconds / accounts))


@dataclass
class Paced:
    """One paced size: CPU and frames over the window for both, and the collector's writes."""

    floor_cpu: float
    floor_frames: int
    ours_cpu: float
    ours_frames: int
    streams: Streams
    totals: tuple[int, float, float]


def paced_pair(tmp: Path, accounts: int, influx: InfluxServer) -> Paced:
    """The floor and the collector at the same time, each fed at the full rate by its own
    feeder, so both see the same machine (its other load moves during a run)."""
    streams = paced_streams(accounts)
    db = f"paced{accounts}"
    with (
        rest_sim(tmp / "floor", accounts) as sim,
        feeder(streams, "paced", PACED_RATE) as floor_feed,
        feeder(streams, "paced", PACED_RATE) as ours_feed,
        collector_on(tmp, accounts, influx, db, ours_feed) as (_, ours),
    ):
        keys = str(sim.directory / "keys.json")
        floor = client(
            "tests.bench.floor_client",
            "--url",
            floor_feed.url,
            "--keys",
            keys,
            "--expect",
            str(10**12),
        )
        try:
            wait_until(lambda: floor_feed.subscribed >= accounts, timeout=900, interval=0.05)
            time.sleep(0.5)
            floor_feed.start()
            ours_feed.start()
            time.sleep(PACED_WARMUP)
            before = (cpu_seconds(floor.pid), floor_feed.sent(), cpu_seconds(ours.pid))
            ours_sent = ours_feed.sent()
            time.sleep(PACED_WINDOW)
            floor_cpu = cpu_seconds(floor.pid) - before[0]
            floor_frames = floor_feed.sent() - before[1]
            ours_cpu = cpu_seconds(ours.pid) - before[2]
            ours_frames = ours_feed.sent() - ours_sent
        finally:
            floor.terminate()
            floor.wait(timeout=60)
        wait_until(lambda: ours_feed.finished_at() > 0, timeout=600, interval=0.2)
        wait_until(
            lambda: influx_totals(influx, db, "gate_unified_asset_detail")[0] >= streams.points,
            timeout=120,
            interval=0.2,
        )
        time.sleep(1)  # anything beyond would be a duplicate: let it show
        totals = influx_totals(influx, db, "gate_unified_asset_detail")
    return Paced(floor_cpu, floor_frames, ours_cpu, ours_frames, streams, totals)


def test_paced(tmp_path: Path) -> None:
    load = Load.now()
    lines = [
        f"A fixed total rate of {PACED_RATE:,.0f} updates/s, evenly spread over every "
        "account (one frame per connection at a time, as spread-out real traffic arrives), "
        f"from the pre-built feeder; every subscription up, {PACED_WARMUP:g} s warm-up, then "
        f"the client's CPU over a {PACED_WINDOW:g} s window / frames sent to it in that "
        "window. The collector and the floor (trio-websocket, count only) run at the same "
        "time, each fed at the full rate by its own feeder, so both see the same machine; "
        "every point the collector wrote is counted back and its sums compared.",
        "",
        "| accounts | frames/s sent | floor µs/update | collector µs/update | ratio | goal "
        "<= 1.25 | points written / sent, sums checked |",
        "|---|---|---|---|---|---|---|",
    ]
    checks = []
    with influx_server(tmp_path / "influx") as influx:
        for accounts in PACED_ACCOUNTS:
            run = paced_pair(tmp_path / f"p{accounts}", accounts, influx)
            floor_us = run.floor_cpu / run.floor_frames * 1e6
            ours_us = run.ours_cpu / run.ours_frames * 1e6
            streams, totals, c_frames = run.streams, run.totals, run.ours_frames
            ratio = ours_us / floor_us
            goal = verdict(ratio <= 1.25) if accounts >= 1000 else "(not a goal)"
            lines.append(
                f"| {accounts:,} | {c_frames / PACED_WINDOW:,.0f} | {floor_us:.1f} | "
                f"{ours_us:.1f} | {ratio:.2f} | {goal} | {checked(streams, totals)} |"
            )
            checks.append((streams, totals))
    lines += ["", load.describe()]
    record("Throughput paced", "\n".join(lines))
    for streams, totals in checks:
        assert totals[0] == streams.points
        assert math.isclose(totals[1], streams.available_sum, rel_tol=1e-9)
