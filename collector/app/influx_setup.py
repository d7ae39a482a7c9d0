"""``gate-collector influx-setup``: retention and downsampling for years of history (InfluxDB 1.x).

Continuous queries keep every field of the data contract per 1 minute
(``gate_1m``, default 180 days) and per 1 hour (``gate_1h``, kept forever; README
has the disk each costs), under the same measurement, tag and field names, so a
dashboard reads old history by naming the policy (``"gate_1h"."gate_broker_totals"``).
``last()`` is the right reduction for states (a balance, a rate, a counter: the
last one in a minute is what the account stood at); a sequence gap is an event,
so its ``missed`` updates are summed. InfluxQL cannot keep a field's name through
a wildcard (``last(*)`` writes ``last_<name>``), so the lists are the contract's
(``points/schema.py``); a test compares them with what a real run writes.

The raw policy (the database's default, which other writers may share) is left
as it is unless ``--raw`` is given; nothing here makes another policy the default.

The statements are built from the data contract (``points/schema.py``), never
spelt by hand, and are idempotent: run it again after changing a duration.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

from collector.app.failures import EXIT_LOCAL, EXIT_REMOTE
from collector.base.logging import redact_url
from collector.config import InfluxSettings, http_client, load_settings
from collector.points import schema

DURATION: Final = re.compile(r"(INF|[1-9][0-9]*[hdw])")
MINUTE_RP: Final = "gate_1m"
HOUR_RP: Final = "gate_1h"

_ACCOUNT_FIELDS: Final = (schema.FIELD_U, schema.FIELD_REFRESH_TIME)
# measurement -> every field the collector writes to it (kept by last(), but SUMMED)
DOWNSAMPLED: Final[dict[str, tuple[str, ...]]] = {
    schema.BROKER_TOTALS: (schema.TOTALS_ACCOUNTS, *schema.BROKER_TOTAL_FIELDS),
    schema.CURRENCY_TOTALS: (schema.TOTALS_ACCOUNTS, *schema.CURRENCY_TOTAL_FIELDS),
    schema.ACCOUNT_STATE: (
        schema.STATE_CONNECTED,
        schema.STATE_SESSION,
        schema.STATE_SECONDS_SINCE_UPDATE,
        schema.STATE_SECONDS_SINCE_FRAME,
        schema.STATE_MODE,  # a string: last() carries it
        schema.EFFECTIVE_MAINTENANCE_MARGIN_RATE,
        schema.EFFECTIVE_INITIAL_MARGIN_RATE,
        *schema.ACCOUNT_STATE_VALUES,
    ),
    schema.ASSETS: tuple(
        sorted({*schema.ASSETS_FIELDS.values(), *schema.SNAPSHOT_ASSETS_FIELDS, *_ACCOUNT_FIELDS})
    ),
    schema.ASSET_DETAIL: tuple(
        sorted({*schema.DETAIL_FIELDS.values(), *schema.SNAPSHOT_DETAIL_FIELDS, *_ACCOUNT_FIELDS})
    ),
    schema.SEQUENCE_GAP: (schema.GAP_EXPECTED, schema.GAP_RECEIVED, schema.GAP_MISSED),
    schema.COLLECTOR_STATS: tuple(
        value for name, value in vars(schema).items() if name.startswith("STAT_")
    ),
}
# Events, not states: every one in the interval counts.
SUMMED: Final = frozenset({(schema.SEQUENCE_GAP, schema.GAP_MISSED)})


@dataclass(frozen=True)
class Retention:
    """How long each resolution is kept: InfluxQL durations (``90d``, ``52w``, ``INF``)."""

    raw: str | None = None  # None: leave the raw policy's duration alone
    minute: str = "180d"
    hour: str = "INF"

    def __post_init__(self) -> None:
        for name, value in (("raw", self.raw), ("minute", self.minute), ("hour", self.hour)):
            if value is not None and not DURATION.fullmatch(value):
                raise ValueError(
                    f"retention {name}={value!r} is not an InfluxQL duration: use e.g. 90d, 52w, "
                    "24h or INF"
                )


def _q(name: str) -> str:
    return '"' + name.replace('"', '\\"') + '"'


def downsample(database: str, source_rp: str, target_rp: str, every: str, measurement: str) -> str:
    """The SELECT ... INTO of one measurement at one resolution."""
    fields = ", ".join(
        f"{'sum' if (measurement, f) in SUMMED else 'last'}({_q(f)}) AS {_q(f)}"
        for f in DOWNSAMPLED[measurement]
    )
    db = _q(database)
    # names come from the config and schema.py, each quoted and escaped by _q
    return (
        f"SELECT {fields} INTO {db}.{_q(target_rp)}.{_q(measurement)} "  # noqa: S608
        f"FROM {db}.{_q(source_rp)}.{_q(measurement)} GROUP BY time({every}), *"
    )


def statements(database: str, raw_rp: str, retention: Retention) -> list[str]:
    """Every InfluxQL statement of the setup, in order (idempotent)."""
    db = _q(database)
    out = [f"CREATE DATABASE {db}"]
    if retention.raw is not None:  # asked for: it may be the default policy others use
        out.append(f"ALTER RETENTION POLICY {_q(raw_rp)} ON {db} DURATION {retention.raw}")
    for rp, duration in ((MINUTE_RP, retention.minute), (HOUR_RP, retention.hour)):
        # CREATE fails when the policy exists with other settings: ALTER sets the duration
        out.append(f"CREATE RETENTION POLICY {_q(rp)} ON {db} DURATION {duration} REPLICATION 1")
        out.append(f"ALTER RETENTION POLICY {_q(rp)} ON {db} DURATION {duration}")
    for measurement in DOWNSAMPLED:
        for rp, source, every in ((MINUTE_RP, raw_rp, "1m"), (HOUR_RP, MINUTE_RP, "1h")):
            name = _q(f"{rp}_{measurement}")
            out.append(f"DROP CONTINUOUS QUERY {name} ON {db}")
            select = downsample(database, source, rp, every, measurement)
            out.append(f"CREATE CONTINUOUS QUERY {name} ON {db} BEGIN {select} END")
    return out


class SetupError(Exception):
    """InfluxDB refused a statement (the message names it)."""


async def setup(influx: InfluxSettings, retention: Retention) -> list[str]:
    """Run the statements against ``influx`` (v1 API); return them; SetupError on a refusal."""
    if influx.api != "v1":
        raise SetupError(
            "influx-setup speaks InfluxDB 1.x (influx.api = v1); on 2.x set the bucket's "
            "retention and use tasks for downsampling"
        )
    auth: httpx.Auth | None = None
    if influx.username and influx.password is not None:
        auth = httpx.BasicAuth(influx.username, influx.password.get_secret_value())
    done = statements(influx.database, influx.retention_policy or "autogen", retention)
    async with http_client(timeout=influx.timeout) as http:
        for statement in done:
            response = await http.post(
                f"{influx.url}/query", data={"q": statement}, auth=auth or httpx.USE_CLIENT_DEFAULT
            )
            error = _error(response)
            if error and not _harmless(statement, error):
                raise SetupError(f"InfluxDB refused {statement[:120]!r}: {error}")
    return done


def _harmless(statement: str, error: str) -> bool:
    """Re-running: the query to drop may not exist; the policy may (ALTER follows)."""
    if statement.startswith("DROP CONTINUOUS QUERY"):
        return True
    return statement.startswith("CREATE RETENTION POLICY") and "already exists" in error


def _error(response: httpx.Response) -> str | None:
    if response.status_code >= 400:
        return f"HTTP {response.status_code} {response.text[:200]}"
    for result in response.json().get("results", []):
        if "error" in result:
            return str(result["error"])
    return None


async def main(config: Path, raw: str | None, minute: str, hour: str) -> int:
    """The command: print what was done, or one line on stderr saying what went wrong
    (exit 2 for a bad duration, 1 when InfluxDB refuses or cannot be reached)."""
    influx = load_settings(config).influx
    try:
        retention = Retention(raw, minute, hour)
    except ValueError as exc:
        print(f"gate-collector influx-setup: {exc}", file=sys.stderr)
        return EXIT_LOCAL
    try:
        done = await setup(influx, retention)
    except SetupError as exc:
        print(f"gate-collector influx-setup: {exc}", file=sys.stderr)
        return EXIT_REMOTE
    except httpx.HTTPError as exc:
        print(
            "gate-collector influx-setup: cannot reach InfluxDB at "
            f"{redact_url(influx.url)}: {exc!r}",
            file=sys.stderr,
        )
        return EXIT_REMOTE
    queries = sum(1 for s in done if s.startswith("CREATE CONTINUOUS QUERY"))
    kept = f"raw kept {raw}" if raw is not None else "raw policy left as it was"
    print(
        f"ok: {influx.database}: {kept}, {MINUTE_RP} {minute}, {HOUR_RP} {hour}; "
        f"{queries} continuous queries"
    )
    return 0
