"""Every dashboard panel and alert rule gives the right VALUES on known histories.

A real InfluxDB holds 24 h of a broker with five accounts, as the collector
writes it (the raw points and, every 30 s, what the real TotalsTracker makes of
them): quiet-a last changed 6 h ago (equity 5.0 M, liabilities 4.0 M,
maintenance margin rate 104.5 %), busy-b updates every minute with no margin in
use (9999.99), gone-c stopped 40 min ago and its session is broken, over-d has
no session (over capacity), single-e is in single-currency margin mode (no
account-level rate: Gate's 0 there is not written; USDT's rate, 130 %, is its
effective one) and updates every minute. Two collector instances write collector_stats; one
went silent 20 min ago. Queries run as Grafana sends them, over 1 h and 24 h.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from collector.devtools import grafana
from collector.devtools.grafana import alerts
from collector.points import modes, schema
from collector.points.book import AccountBook
from collector.points.lineproto import Point, encode
from collector.points.totals import SessionState, TotalsTracker
from tests.helpers import (
    expand,
    firing,
    grafana_interval,
    panel,
    run_query,
    single_value,
    sort_like_grafana,
    table_rows,
)
from tests.servers import InfluxServer

DB = "dashboard_values"
TICK_S = 30  # the stats interval of the seeded collector
MIN_S, HOUR_S = 60, 3600
DAY_S = 24 * HOUR_S
RANGES = [HOUR_S, DAY_S]
QUIET, BUSY, GONE, OVER, SINGLE = "1001", "1002", "1003", "1004", "1005"
LABELS = {QUIET: "quiet-a", BUSY: "busy-b", GONE: "gone-c", OVER: "over-d", SINGLE: "single-e"}
SINGLE_RATE = 1.3


@dataclass
class Seeded:
    """The server and what was written: the truth the panels must show."""

    server: InfluxServer
    now_ms: int
    equity_steps: dict[str, list[tuple[int, float]]]  # account -> [(time_ms, equity)]
    ticks: list[int]


def account_events(now_ms: int) -> list[Point]:
    """The raw points of the three accounts with data, in time order."""
    start = now_ms - DAY_S * 1000
    events: list[Point] = []

    def assets(account: str, at_ms: int, equity: float, liab: float, mmr: float) -> None:
        tags = ((schema.TAG_ACCOUNT, account), (schema.TAG_ACCOUNT_LABEL, LABELS[account]))
        detail = (*tags, (schema.TAG_CURRENCY, "USDT"))
        if account == SINGLE:  # only what applies in single-currency mode is written
            fields = {schema.EQUITY: equity, schema.TOTAL: equity}
            usdt = {
                schema.DETAIL_EQUITY: equity,
                schema.DETAIL_MAINTENANCE_MARGIN_RATE: mmr,
                schema.DETAIL_INITIAL_MARGIN_RATE: mmr / 2,
            }
        else:
            fields = {
                schema.EQUITY: equity,
                schema.LIABILITIES: liab,
                schema.TOTAL: equity + liab,
                schema.AVAILABLE_MARGIN: equity - liab,
                schema.MAINTENANCE_MARGIN_RATE: mmr,
                schema.INITIAL_MARGIN_RATE: mmr + 0.1,
            }
            usdt = {schema.DETAIL_EQUITY: equity, schema.DETAIL_LIABILITIES: liab}
        events.append(Point(schema.ASSETS, tags, fields, at_ms))
        events.append(Point(schema.ASSET_DETAIL, detail, usdt, at_ms))

    assets(QUIET, now_ms - 20 * HOUR_S * 1000, 4_000_000.0, 3_000_000.0, 1.2)
    assets(QUIET, now_ms - 6 * HOUR_S * 1000, 5_000_000.0, 4_000_000.0, 1.045)
    for minute in range(DAY_S // MIN_S):
        at = start + minute * MIN_S * 1000 + 7_000
        assets(BUSY, at, 100_000.0, 10.0 + minute % 3, schema.NO_MARGIN_RATE)
        assets(SINGLE, at, 300_000.0, 0.0, SINGLE_RATE)
        if at < now_ms - 40 * MIN_S * 1000:
            assets(GONE, at, 200_000.0 - (minute % 2), 1_000.0, 2.5)
    return sorted(events, key=lambda p: p.time_ms)


def sessions() -> dict[str, SessionState]:
    return {
        QUIET: SessionState(LABELS[QUIET], schema.SESSION_CONNECTED, 20.0),
        BUSY: SessionState(LABELS[BUSY], schema.SESSION_CONNECTED, 1.0),
        GONE: SessionState(LABELS[GONE], schema.SESSION_DISCONNECTED),
        OVER: SessionState(OVER, schema.SESSION_OVER_CAPACITY),
        SINGLE: SessionState(LABELS[SINGLE], schema.SESSION_CONNECTED, 1.0),
    }


def collector_stats(now_ms: int) -> list[Point]:
    """'alive' writes until now (spool growing, a write error 5 min ago); 'dead' stopped."""
    out = []
    for t in range(now_ms - 2 * HOUR_S * 1000, now_ms, 10_000):
        recent = t > now_ms - 10 * MIN_S * 1000
        fields: dict[str, Any] = {
            schema.STAT_SESSIONS_TOTAL: 3,
            schema.STAT_SESSIONS_CONNECTED: 2,
            schema.STAT_SESSIONS_OVER_CAPACITY: 1,
            schema.STAT_SPOOL_BYTES: (t - (now_ms - 10 * MIN_S * 1000)) // 1000 if recent else 0,
            schema.STAT_WRITE_ERRORS: 1 if t > now_ms - 5 * MIN_S * 1000 else 0,
            schema.STAT_WRITE_TIME_MS: 2.5,
        }
        tags = ((schema.TAG_INSTANCE, "alive"), (schema.TAG_SHARD, "0/2"))
        out.append(Point(schema.COLLECTOR_STATS, tags, fields, t))
        if t < now_ms - 20 * MIN_S * 1000:
            tags = ((schema.TAG_INSTANCE, "dead"), (schema.TAG_SHARD, "1/2"))
            out.append(Point(schema.COLLECTOR_STATS, tags, fields, t))
    return out


@pytest.fixture(scope="module")
def seeded(influxdb: InfluxServer) -> Iterator[Seeded]:
    # 15 s past a tick: the last 3-minute bucket of the silence rule holds a stats point
    now_ms = (int(time.time()) // TICK_S) * TICK_S * 1000 + 15_000
    influxdb.create_database(DB)
    events = account_events(now_ms)
    book = AccountBook()  # the modes the accounts' snapshots said
    for account in (QUIET, BUSY, GONE):
        book.set_mode(int(account), modes.MULTI_CURRENCY)
    book.set_mode(int(SINGLE), modes.SINGLE_CURRENCY)
    tracker = TotalsTracker("alive", "0/2", book)
    ticks = list(range(now_ms - DAY_S * 1000 + TICK_S * 1000, now_ms + 1, TICK_S * 1000))
    written: list[Point] = list(events) + collector_stats(now_ms)
    pending = iter(events)
    upcoming = next(pending, None)
    for tick in ticks:
        while upcoming is not None and upcoming.time_ms <= tick:
            tracker.observe([upcoming])
            upcoming = next(pending, None)
        tracker.retain(sessions())
        written += tracker.totals(tick) + tracker.account_states(sessions(), tick)
    lines = [line for p in written if (line := encode(p)) is not None]
    for at in range(0, len(lines), 20_000):
        body = "\n".join(lines[at : at + 20_000])
        response = httpx.post(
            f"{influxdb.url}/write", params={"db": DB, "precision": "ms"}, content=body
        )
        assert response.status_code == 204, response.text
    steps: dict[str, list[tuple[int, float]]] = {}
    for p in events:
        if p.measurement == schema.ASSETS:
            steps.setdefault(dict(p.tags)[schema.TAG_ACCOUNT], []).append(
                (p.time_ms, float(p.fields[schema.EQUITY]))
            )
    yield Seeded(influxdb, now_ms, steps, ticks)


def last_equities(seeded: Seeded, at_ms: int) -> float:
    """The truth: the sum of each account's last equity at ``at_ms``."""
    total = 0.0
    for history in seeded.equity_steps.values():
        known = [equity for t, equity in history if t <= at_ms]
        total += known[-1] if known else 0.0
    return total


def ask(seeded: Seeded, query: str, range_s: int, **values: str) -> list[dict[str, Any]]:
    sent = expand(
        query,
        now_ms=seeded.now_ms,
        range_s=range_s,
        interval_s=grafana_interval(range_s, "1m"),
        values={k: [v] for k, v in values.items()},
    )
    return run_query(seeded.server, DB, sent)


BROKER = grafana.dashboards()["broker-overview.json"]


def stat_value(seeded: Seeded, title: str, range_s: int, **values: str) -> float | None:
    (query,) = [t["query"] for t in panel(BROKER, title)["targets"]]
    return single_value(ask(seeded, query, range_s, **values))


@pytest.mark.parametrize("range_s", RANGES)
def test_total_equity_is_the_sum_of_every_accounts_last_equity(
    seeded: Seeded, range_s: int
) -> None:
    expected = 5_000_000.0 + 100_000.0 + seeded.equity_steps[GONE][-1][1] + 300_000.0
    assert expected == last_equities(seeded, seeded.now_ms)
    assert stat_value(seeded, "Total equity", range_s) == expected


@pytest.mark.parametrize("range_s", RANGES)
def test_total_liabilities_include_the_quiet_account(seeded: Seeded, range_s: int) -> None:
    busy_liab = 10.0 + (DAY_S // MIN_S - 1) % 3
    assert stat_value(seeded, "Total liabilities", range_s) == 4_000_000.0 + busy_liab + 1_000.0


@pytest.mark.parametrize("range_s", RANGES)
def test_every_account_with_data_is_counted(seeded: Seeded, range_s: int) -> None:
    assert stat_value(seeded, "Accounts with data", range_s) == 4


@pytest.mark.parametrize("range_s", RANGES)
def test_liquidation_ranking_puts_the_lowest_effective_rate_first_and_no_margin_last(
    seeded: Seeded, range_s: int
) -> None:
    table = panel(BROKER, "Closest to liquidation")
    rows = sort_like_grafana(
        table_rows(ask(seeded, table["targets"][0]["query"], range_s)), table["options"]
    )
    assert [r[schema.TAG_ACCOUNT] for r in rows] == [QUIET, SINGLE, GONE, BUSY]
    assert rows[0]["maintenance margin rate"] == 1.045
    assert rows[0]["initial margin rate"] == pytest.approx(1.145)
    assert rows[1]["maintenance margin rate"] == SINGLE_RATE  # USDT's: never Gate's 0
    assert rows[1]["initial margin rate"] == SINGLE_RATE / 2
    assert [r["mode"] for r in rows] == ["multi_currency", "single_currency"] + 2 * [
        "multi_currency"
    ]
    assert rows[-1]["maintenance margin rate"] == schema.NO_MARGIN_RATE
    assert stat_value(seeded, "Lowest maintenance margin rate", range_s) == 1.045


def test_liquidation_thresholds_are_gates_levels() -> None:
    table = panel(BROKER, "Closest to liquidation")
    overrides = table["fieldConfig"]["overrides"]
    (mmr,) = [o for o in overrides if o["matcher"]["options"] == "maintenance margin rate"]
    props = {p["id"]: p["value"] for p in mmr["properties"]}
    assert props["unit"] == "percentunit"
    levels = {s["value"]: s["color"] for s in props["thresholds"]["steps"]}
    assert levels[None] == "red" and levels[1.0] == "orange" and levels[1.1] == "yellow"
    (mapping,) = props["mappings"]
    # exactly Gate's 9999.99, not a range: REST rates above it are real (16499.13...)
    assert mapping["type"] == "value"
    assert mapping["options"] == {
        "9999.99": {"text": "no margin in use", "color": "green", "index": 0}
    }


@pytest.mark.parametrize("range_s", RANGES)
def test_a_stale_account_is_flagged_and_told_from_a_broken_one(
    seeded: Seeded, range_s: int
) -> None:
    assert stat_value(seeded, "Stale accounts", range_s, stale_seconds="3600") == 1
    assert stat_value(seeded, "Stale accounts", range_s, stale_seconds="900") == 2
    assert stat_value(seeded, "Sessions not connected", range_s) == 2
    table = panel(BROKER, "Accounts by staleness")
    rows = sort_like_grafana(
        table_rows(ask(seeded, table["targets"][0]["query"], range_s)), table["options"]
    )
    by_account = {r[schema.TAG_ACCOUNT]: r for r in rows}
    assert rows[0][schema.TAG_ACCOUNT] == QUIET
    assert rows[0]["seconds since update"] == pytest.approx(6 * HOUR_S, abs=TICK_S)
    assert by_account[QUIET]["session"] == schema.SESSION_CONNECTED  # quiet, not broken
    assert by_account[GONE]["session"] == schema.SESSION_DISCONNECTED
    assert by_account[OVER]["session"] == schema.SESSION_OVER_CAPACITY


@pytest.mark.parametrize("range_s", RANGES)
def test_totals_over_time_follow_the_known_step_function(seeded: Seeded, range_s: int) -> None:
    query = panel(BROKER, "Broker totals over time")["targets"][0]["query"]
    interval = grafana_interval(range_s, panel(BROKER, "Broker totals over time")["interval"])
    (series,) = ask(seeded, query, range_s)
    column = series["columns"].index("equity")
    sampled = [(row[0], row[column]) for row in series["values"] if row[column] is not None]
    assert len(sampled) >= range_s // interval - 1
    for bucket, value in sampled:
        last_tick = max(t for t in seeded.ticks if bucket <= t < bucket + interval * 1000)
        assert value == last_equities(seeded, last_tick), bucket
    if range_s == DAY_S:  # before quiet-a, then 4.0 M, then 5.0 M: all three steps seen
        levels = {round(v / 1e6, 1) for _, v in sampled}
        assert levels == {0.6, 4.6, 5.6}  # single-e's 0.3 M in each


@pytest.mark.parametrize("range_s", RANGES)
def test_per_currency_totals_are_broker_wide(seeded: Seeded, range_s: int) -> None:
    table = panel(BROKER, "Per currency")
    (row,) = table_rows(ask(seeded, table["targets"][0]["query"], range_s))
    assert row[schema.TAG_CURRENCY] == "USDT"
    assert row["equity"] == last_equities(seeded, seeded.now_ms)


# -- alert rules ------------------------------------------------------------------------


def fired(seeded: Seeded, uid: str) -> dict[str, float]:
    (rule,) = [r for r in alerts.rules() if r.uid == uid]
    series = run_query(
        seeded.server,
        DB,
        expand(rule.query, now_ms=seeded.now_ms, range_s=rule.minutes * 60),
    )
    return firing(series, rule.op, rule.threshold)


def test_margin_alert_fires_for_the_accounts_below_150_percent_only(seeded: Seeded) -> None:
    assert fired(seeded, "gate-margin-low") == {
        f"account={QUIET},account_label=quiet-a": 1.045,
        f"account={SINGLE},account_label=single-e": SINGLE_RATE,
    }


def test_stale_and_broken_alerts(seeded: Seeded) -> None:
    assert list(fired(seeded, "gate-account-stale")) == [f"account={QUIET},account_label=quiet-a"]
    assert sorted(fired(seeded, "gate-account-broken")) == [
        f"account={GONE},account_label=gone-c",
        f"account={OVER},account_label={OVER}",
    ]


def test_collector_alerts(seeded: Seeded) -> None:
    alive = "instance=alive,shard=0/2"
    assert fired(seeded, "gate-sessions-below-total") == {alive: 1}
    assert fired(seeded, "gate-over-capacity") == {alive: 1}
    assert list(fired(seeded, "gate-collector-silent")) == ["instance=dead,shard=1/2"]


def test_every_rule_is_checked_here() -> None:
    checked = {
        "gate-margin-low",
        "gate-account-stale",
        "gate-account-broken",
        "gate-sessions-below-total",
        "gate-over-capacity",
        "gate-collector-silent",
    }
    assert {r.uid for r in alerts.rules()} == checked
