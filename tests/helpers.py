"""What many tests share: waiting with a deadline, lines back to points, InfluxDB queries,
the sink's test settings, a supervisor on the simulator, the collector as a subprocess,
and dashboard queries run as Grafana would.

No test module imports another; what two need lives here (fixtures: ``conftest.py``).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from collector.app.commands import write_credentials
from collector.config import InfluxSettings, Settings
from collector.devtools.simulator import Simulator
from collector.gate.broker import BrokerClient, RetryPolicy
from collector.gate.signing import ApiCredentials
from collector.gate.snapshot import SnapshotClient
from collector.keys import KeyStore, generate_master_key
from collector.points import schema
from collector.points.lineproto import Bundle, FieldValue, FloatText, Point, Record
from collector.points.normalize import Normalized
from collector.session.session import SessionTiming
from collector.supervisor.supervisor import Supervisor
from tests.servers import InfluxServer, free_port


def _split(text: str, sep: str, quotes: bool = True) -> list[str]:
    """Split on ``sep`` outside backslash escapes and (with ``quotes``) string values.

    A double quote opens a string only right after ``=`` (a field's value): in keys,
    and anywhere in the series (measurement and tags), it is a plain character.
    """
    parts, current, quoted, i = [], [], False, 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if quotes and char == '"' and (quoted or (i > 0 and text[i - 1] == "=")):
            quoted = not quoted
        if char == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _value(text: str) -> FieldValue:
    if text.endswith("i"):
        return int(text[:-1])
    if text in ("true", "false"):
        return text == "true"
    if text.startswith('"'):
        return _unescape(text[1:-1])
    return FloatText(text)  # floats stay the text that was written


def parse_line(line: str) -> Point:
    """One line (ms precision) as a Point; float fields as their FloatText."""
    series = _split(line, " ", quotes=False)[0]
    fields, stamp = line[len(series) + 1 :].rsplit(" ", 1)
    measurement, *tags = _split(series, ",", quotes=False)
    pairs = tuple(
        (_unescape(key), _unescape(value))
        for key, value in (_split(tag, "=", quotes=False) for tag in tags)
    )
    values = {
        _unescape(key): _value(value)
        for key, value in (_split(field, "=") for field in _split(fields, ","))
    }
    return Point(_unescape(measurement), pairs, values, int(stamp))


def as_points(records: Iterable[Record]) -> list[Point]:
    """Records as points: lines parsed back, points as they are."""
    return [parse_line(r) if isinstance(r, str) else r for r in records]


def points_of(out: Normalized) -> list[Point]:
    """What a normalised update hands to the sink, as points (gap points first)."""
    return as_points(out.records())


# -- Run dashboard and alert queries the way Grafana would, against a real InfluxDB ----------

# Grafana's interval rounding (kbn.roundInterval), the steps a 1 h .. 24 h range meets.
_NICE = [(1.5, 1), (3.5, 2), (7.5, 5), (12.5, 10), (17.5, 15), (25, 20), (45, 30), (90, 60)]
_NICE += [(210, 120), (450, 300), (750, 600), (1050, 900), (1500, 1200), (2700, 1800)]
MAX_DATA_POINTS = 1000


def grafana_interval(range_s: float, min_interval: str = "") -> int:
    """``$__interval`` in seconds for a panel ``MAX_DATA_POINTS`` wide."""
    raw = range_s / MAX_DATA_POINTS
    seconds = next((nice for limit, nice in _NICE if raw < limit), 3600)
    if min_interval:
        seconds = max(seconds, duration(min_interval))
    return seconds


def duration(text: str) -> int:
    """``"1m"`` -> 60."""
    number, unit = int(text[:-1]), text[-1]
    return number * {"s": 1, "m": 60, "h": 3600}[unit]


def expand(
    query: str,
    *,
    now_ms: int,
    range_s: int,
    interval_s: int = 60,
    values: dict[str, list[str]] | None = None,
) -> str:
    """What Grafana sends: $timeFilter, $__interval and variables filled in."""
    start = now_ms - range_s * 1000
    query = query.replace("$timeFilter", f"time >= {start}ms and time <= {now_ms}ms")
    query = query.replace("$__interval", f"{interval_s}s")
    for name, options in sorted((values or {}).items(), key=lambda item: -len(item[0])):
        text = options[0] if len(options) == 1 else "(" + "|".join(map(re.escape, options)) + ")"
        query = query.replace("${" + name + "}", text).replace("$" + name, text)
    assert not re.search(r"\$[{A-Za-z_]", query), query  # a variable left unexpanded
    return query


def run_query(server: InfluxServer, db: str, query: str) -> list[dict[str, Any]]:
    """The series of one statement; an InfluxDB error fails the test with the query."""
    result = server.query(query, db=db)["results"][0]  # type: ignore[index]
    assert "error" not in result, f"{result['error']}\n{query}"
    return list(result.get("series", []))


def single_value(series: list[dict[str, Any]]) -> float | None:
    """A stat panel's value: the last non-null of the (only) series."""
    values = [v for s in series for row in s["values"] for v in row[1:] if v is not None]
    return values[-1] if values else None


def table_rows(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A table panel's rows: group-by tags and columns by name, as Grafana's table shows."""
    rows = []
    for s in series:
        for values in s["values"]:
            rows.append({**s.get("tags", {}), **dict(zip(s["columns"], values, strict=True))})
    return rows


def sort_like_grafana(rows: list[dict[str, Any]], options: dict[str, Any]) -> list[dict[str, Any]]:
    """A table's ``sortBy`` applied (nulls last either way)."""
    (by,) = options["sortBy"]
    key, desc = by["displayName"], by["desc"]
    present = [r for r in rows if r.get(key) is not None]
    missing = [r for r in rows if r.get(key) is None]
    return sorted(present, key=lambda r: float(r[key]), reverse=desc) + missing


def firing(series: list[dict[str, Any]], op: str, threshold: float) -> dict[str, float]:
    """Grafana's reduce(last) + threshold per series: label text -> value, for those firing."""
    out = {}
    for s in series:
        values = [row[-1] for row in s["values"] if row[-1] is not None]
        if not values:
            continue
        value = float(values[-1])
        hit = value > threshold if op == "gt" else value < threshold
        if hit and not math.isnan(value):
            out[",".join(f"{k}={v}" for k, v in sorted(s.get("tags", {}).items()))] = value
    return out


def panel(dashboard: dict[str, Any], title_start: str) -> dict[str, Any]:
    """The one panel whose title starts so."""
    (found,) = [p for p in dashboard["panels"] if p["title"].startswith(title_start)]
    return found


def detail_points(accounts: int, updates: int) -> Iterator[list[Point]]:
    """Bundles of 3 asset_detail points (one update), values derived from the indices."""
    for update in range(updates):
        for account in range(accounts):
            yield [
                Point(
                    "gate_unified_asset_detail",
                    (("account", str(100_000 + account)), ("currency", currency)),
                    {"available": update * 1000 + account + c / 10, "u": update},
                    1_700_000_000_000 + update,
                )
                for c, currency in enumerate(("BTC", "ETH", "USDT"))
            ]


def settings_for(url: str, database: str, **overrides: Any) -> InfluxSettings:
    values: dict[str, Any] = {
        "url": url,
        "database": database,
        "batch_size": 1000,
        "flush_interval": 0.05,
        "flush_jitter": 0.0,
    }
    values.update(overrides)
    return InfluxSettings(**values)


def scalar(server: InfluxServer, query: str, db: str) -> Any:
    result = server.query(query, db=db)["results"][0]  # type: ignore[index]
    series = result.get("series")
    return series[0]["values"][0][1] if series else 0


DAEMON_ACCOUNTS = 100  # the e2e simulator (conftest ``gate``)
GAP_ACCOUNT = 100002  # one of them counts u instead of naming the user


async def wait_until(
    condition: Callable[[], object], seconds: float = 60.0, what: str = ""
) -> None:
    """Poll ``condition`` (plain or async) until it holds; fail after ``seconds`` of trio's
    clock, naming ``what``. An async condition is awaited: its coroutine object is not an
    answer."""
    try:
        with trio.fail_after(seconds):
            while True:
                held = condition()
                if inspect.isawaitable(held):
                    held = await held
                if held:
                    return
                await trio.sleep(0.02)
    except trio.TooSlowError:
        raise AssertionError(f"not within {seconds} s: {what or condition}") from None


def query(influx: InfluxServer, db: str, q: str) -> list[dict[str, Any]]:
    result = influx.query(q, db=db)["results"][0]  # type: ignore[index]
    if "error" in result:
        raise AssertionError(result["error"])
    return list(result.get("series", []))


class Collector:
    """``gate-collector run`` as a subprocess with its log in a file."""

    def __init__(
        self, tmp: Path, sim: Simulator, influx: InfluxServer, db: str, refresh: float = 60.0
    ) -> None:
        self.tmp = tmp
        self.log = tmp / "collector.log"
        self.config = tmp / "collector.toml"
        self.config.write_text(
            f'[gate]\nrest_url = "{sim.rest_url}"\nws_url = "{sim.ws_url}"\n'
            f"[accounts]\nrefresh_interval = {refresh}\n"
            f'[state]\ndir = "{tmp}/state"\n'
            f'[influx]\nurl = "{influx.url}"\ndatabase = "{db}"\nflush_interval = 0.2\n'
        )
        write_credentials(tmp / "creds", sim.state.broker)
        self.master_key = generate_master_key()
        self.process: trio.Process | None = None

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATE_", "INFLUX_"))}
        env.update(
            CREDENTIALS_DIRECTORY=str(self.tmp / "creds"), GATE_COLLECTOR_MASTER_KEY=self.master_key
        )
        with self.log.open("ab") as out:
            self.process = await trio.lowlevel.open_process(
                [
                    sys.executable,
                    "-m",
                    "collector.app.cli",
                    "--log-level",
                    "debug",
                    "run",
                    "--config",
                    str(self.config),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )

    async def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        with trio.fail_after(60):
            return await self.process.wait()


def enabled(sim: Simulator) -> set[int]:
    return {a.gate_id for a in sim.state.accounts.values() if a.status == "enabled"}


def all_subscribed(sim: Simulator, accounts: set[int]) -> bool:
    return all(sim.state.active[a] == 2 for a in accounts)


async def busy_simulator(
    nursery: trio.Nursery, wall_clock: Callable[[], float], accounts: int, every: float
) -> Simulator:
    """``accounts`` sub-accounts, started in ``nursery``, that each change at every push,
    one push every ``every`` s (Gate pushes only what changed)."""
    simulator = Simulator.create(accounts=accounts, clock=wall_clock)
    simulator.state.push_interval = simulator.state.change_interval = every
    await simulator.start(nursery)
    return simulator


async def every_session_connected(supervisor: Supervisor, seconds: float) -> None:
    """Wait until every session of ``supervisor`` is connected; fail after ``seconds``."""
    with trio.fail_after(seconds):
        while not all(s.connected for s in supervisor.session_stats().values()):
            await trio.sleep(0.5)


# ``await supervise(sim, gate=..., accounts=...)``: the conftest fixture over start_running
Supervise = Callable[..., Awaitable["Running"]]


async def start_collector(
    sim: Simulator, influx: InfluxServer, tmp_path: Path, db: str, per_ip: int = 300
) -> tuple[Collector, str]:
    collector = Collector(tmp_path, sim, influx, db)
    port = free_port()
    text = collector.config.read_text()
    text = text.replace("[accounts]", f"max_connections_per_ip = {per_ip}\n[accounts]")
    collector.config.write_text(text + f'[http]\nlisten = "127.0.0.1:{port}"\n')
    await collector.start()
    return collector, f"http://127.0.0.1:{port}"


async def get_when_up(http: httpx.AsyncClient, url: str, seconds: float = 60) -> httpx.Response:
    """GET ``url`` once the server listens (within ``seconds``)."""
    with trio.fail_after(seconds):
        while True:
            try:
                return await http.get(url)
            except httpx.TransportError:
                await trio.sleep(0.1)


async def wait_ready(http: httpx.AsyncClient, url: str, status: int, text: str) -> httpx.Response:
    with trio.fail_after(60):
        while True:
            answer = await get_when_up(http, f"{url}/readyz")
            if answer.status_code == status and text in answer.text:
                return answer
            await trio.sleep(0.1)


async def start_supervisor(
    sim: Simulator,
    tmp_path: Path,
    nursery: trio.Nursery,
    http: httpx.AsyncClient,
    shard: str = "0/1",
    **gate: object,
) -> Supervisor:
    settings = Settings.model_validate(
        {
            "gate": {"rest_url": sim.rest_url, "ws_url": sim.ws_url, **gate},
            "accounts": {"shard": shard},
            "state": {"dir": str(tmp_path)},
        }
    )
    broker = BrokerClient(http, sim.state.broker, base_url=sim.rest_url)
    store = KeyStore.open(tmp_path, generate_master_key())
    send, receive = trio.open_memory_channel[list[Point]](10_000)

    async def drain() -> None:
        async for _ in receive:
            pass

    supervisor = Supervisor(settings, broker, store, send)
    nursery.start_soon(drain)
    nursery.start_soon(supervisor.run)
    with trio.fail_after(30):
        await supervisor.ready.wait()
    return supervisor


# -- a supervisor on the autojump clock, with what it handed on (permissions, connection limit)


@dataclass
class Running:
    """A supervisor in a test's nursery and the points it handed to the sink."""

    supervisor: Supervisor
    scope: trio.CancelScope
    store: KeyStore
    points: Counter[tuple[str, str]]  # (measurement, account) -> points
    # account -> trio times at which points of it arrived
    arrivals: dict[str, list[float]] = field(default_factory=dict)

    def key_of(self, account: int) -> str:
        stored = self.store.get(account)
        assert stored is not None
        return stored.key


async def start_running(
    nursery: trio.Nursery,
    sim: Simulator,
    http: httpx.AsyncClient,
    state_dir: Path,
    wall_clock: Callable[[], float],
    *,
    gate: dict[str, Any] | None = None,
    accounts: dict[str, Any] | None = None,
    timing: SessionTiming | None = None,
    snapshots: bool = True,
) -> Running:
    """Start a supervisor on ``sim`` (with REST snapshots unless told not); returns once
    it is ready."""
    settings = Settings.model_validate(
        {
            "gate": {"rest_url": sim.rest_url, "ws_url": sim.ws_url, **(gate or {})},
            "accounts": accounts or {},
            "state": {"dir": str(state_dir)},
        }
    )
    broker = BrokerClient(
        http,
        sim.state.broker,
        base_url=sim.rest_url,
        wall_clock=wall_clock,
        retry=RetryPolicy(base_delay=0.1, max_delay=1.0),
    )
    store = KeyStore.open(state_dir, generate_master_key())
    store.io_in_thread = False  # autojump clock: no thread may run while it jumps
    send, receive = trio.open_memory_channel[Bundle](100_000)
    running = Running(
        Supervisor(
            settings,
            broker,
            store,
            send,
            timing=timing,
            wall_clock=wall_clock,
            snapshot_client=SnapshotClient(http, sim.rest_url, wall_clock) if snapshots else None,
        ),
        trio.CancelScope(),
        store,
        Counter(),
    )

    async def drain() -> None:
        async for batch in receive:
            now = trio.current_time()
            for point in as_points(batch):
                account = dict(point.tags)[schema.TAG_ACCOUNT]
                running.points[(point.measurement, account)] += 1
                running.arrivals.setdefault(account, []).append(now)

    async def serve() -> None:
        with running.scope:
            async with trio.open_nursery() as inner:
                inner.start_soon(drain)
                await running.supervisor.run()

    nursery.start_soon(serve)
    with trio.fail_after(60):
        await running.supervisor.ready.wait()
    return running


# -- `gate-collector run` with its endpoint, ended by its context manager whatever the outcome


EXE = [sys.executable, "-m", "collector.app.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any GATE_/INFLUX_ setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATE_", "INFLUX_"))}
    env.update(extra)
    return env


@dataclass
class RunningCollector:
    """A running collector: its endpoint's URL, its process and its log."""

    url: str
    process: trio.Process
    log: Path


def collector_config(tmp: Path, sim: Simulator, influx_url: str, db: str, extra: str = "") -> Path:
    """A config for ``sim`` and ``influx_url`` with the endpoint on a free port."""
    config = tmp / "collector.toml"
    config.write_text(
        f'[gate]\nrest_url = "{sim.rest_url}"\nws_url = "{sim.ws_url}"\n'
        f'[state]\ndir = "{tmp}/state"\n'
        f'[influx]\nurl = "{influx_url}"\ndatabase = "{db}"\nflush_interval = 0.2\n'
        f'[http]\nlisten = "127.0.0.1:{free_port()}"\n{extra}'
    )
    write_credentials(tmp / "creds", sim.state.broker)
    return config


@contextlib.asynccontextmanager
async def running_collector(tmp: Path, config: Path) -> AsyncIterator[RunningCollector]:
    """``gate-collector run --config config``; SIGTERM (then SIGKILL) on the way out."""
    listen = config.read_text().split('listen = "', 1)[1].split('"', 1)[0]
    log = tmp / "collector.log"
    env = clean_env(
        CREDENTIALS_DIRECTORY=str(tmp / "creds"), GATE_COLLECTOR_MASTER_KEY=generate_master_key()
    )
    with log.open("ab") as out:
        process = await trio.lowlevel.open_process(
            [*EXE, "run", "--config", str(config)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        yield RunningCollector(f"http://{listen}", process, log)
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                with trio.move_on_after(30):
                    await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


async def wait_until_ready(http: httpx.AsyncClient, url: str, seconds: float = 60) -> str:
    """Wait for ``/readyz`` to answer 200; its text."""
    with trio.fail_after(seconds):
        while True:
            answer = await get_when_up(http, f"{url}/readyz")
            if answer.status_code == 200:
                return answer.text
            await trio.sleep(0.1)


# -- the daemon as a process of its own (kill -9 and chaos runs)


@dataclass
class DaemonProcess:
    """``gate-collector run`` as a subprocess: its config, credentials and log in ``root``.

    End it with :meth:`stop` (SIGTERM) or :meth:`kill` (SIGKILL); the ``daemons``
    fixture ends whatever a test left running, whatever the outcome.
    """

    root: Path
    rest_url: str
    ws_url: str
    broker: ApiCredentials
    influx_url: str
    database: str
    accounts: str = ""  # more lines of the [accounts] section
    influx: str = ""  # more lines of the [influx] section
    master_key: str = field(default_factory=generate_master_key)
    process: trio.Process | None = None
    starts: int = 0

    @property
    def log(self) -> Path:
        return self.root / "collector.log"

    @property
    def config(self) -> Path:
        return self.root / "collector.toml"

    def write_config(self, influx_url: str | None = None) -> None:
        """The config file (a SIGHUP re-reads it)."""
        self.config.write_text(
            f'[gate]\nrest_url = "{self.rest_url}"\nws_url = "{self.ws_url}"\n'
            f"[accounts]\n{self.accounts}\n"
            f'[state]\ndir = "{self.root}/state"\n'
            f'[influx]\nurl = "{influx_url or self.influx_url}"\ndatabase = "{self.database}"\n'
            f"{self.influx}\n"
        )

    async def start(self) -> None:
        if not self.config.exists():
            self.write_config()
        write_credentials(self.root / "creds", self.broker)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATE_", "INFLUX_"))}
        env.update(
            CREDENTIALS_DIRECTORY=str(self.root / "creds"),
            GATE_COLLECTOR_MASTER_KEY=self.master_key,
        )
        command = [sys.executable, "-m", "collector.app.cli", "--log-level", "debug", "run"]
        with self.log.open("ab") as out:
            self.process = await trio.lowlevel.open_process(
                [*command, "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.starts += 1

    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def kill(self) -> None:
        """kill -9, and reap it."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            with trio.fail_after(15):
                await self.process.wait()

    def reap(self) -> None:
        """kill -9 from outside trio (a fixture's teardown, pass or fail): in a trio run of
        its own, the test's has ended (trio's process calls need a running loop)."""
        trio.run(self.kill)

    def hangup(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)

    async def stop(self) -> int:
        """SIGTERM; its exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        with trio.fail_after(60):
            return await self.process.wait()

    def events(self, name: str) -> list[dict[str, Any]]:
        """The JSON log lines of event ``name``, every run."""
        found = []
        for line in self.log.read_text().splitlines():
            if f'"event": "{name}"' in line:
                found.append(json.loads(line))
        return found


@contextlib.contextmanager
def killed_at_end() -> Iterator[list[DaemonProcess]]:
    """A list for the daemons a test starts: every one is killed at the end, pass or fail
    (a test's fixture wraps it)."""
    started: list[DaemonProcess] = []
    try:
        yield started
    finally:
        for daemon in started:
            daemon.reap()


# -- a small disk --------------------------------------------------------------------------


@contextlib.contextmanager
def mounted_tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. ``64k``) at ``directory``, mode 0700, unmounted on exit;
    the test is skipped where it cannot be mounted (the tests run as root)."""
    directory.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)
