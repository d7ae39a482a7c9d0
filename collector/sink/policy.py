"""What to do with InfluxDB's answer to a write: one pure table, after Telegraf's.

An answer is classified by its status and the kind of its body, then looked up
in :data:`TABLE`; the row says whether the batch is settled (written, rejected,
partly both) or must be split or kept and retried, and how loudly to say so.

The body kind matters: a 400/422 is "InfluxDB refused these lines" only when
InfluxDB itself says so (JSON with ``error``, or v2's ``code``/``message``). A
proxy's HTML page or an empty body on 400 means something else answered, so the
data is kept, retried and the operator alarmed. A partial write (InfluxDB 1.x:
``partial write: ... dropped=N``, on 2xx or 400) counts exactly the dropped lines
(plus one per ``unable to parse``) as rejected and the rest as written.
"""

from __future__ import annotations

import dataclasses
import enum
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import orjson

from collector.base.backoff import backoff_delay
from collector.gate.ratelimit import retry_after

# A server's Retry-After beyond this is not believed (a misconfigured proxy could say a day).
MAX_RETRY_AFTER: Final = 300.0
BASE_BACKOFF: Final = 0.5
MAX_BACKOFF: Final = 60.0

_DROPPED: Final = re.compile(r"dropped=(\d+)")
_UNPARSABLE: Final = re.compile(r"unable to parse")
# What InfluxDB 1.x names in a partial-write message: measurement and tag/value.
_SERIES: Final = re.compile(
    r'(?:measurement=|on measurement )"?([^"\s]+)"?'
    r'|tag="?([^"\s]+)"? value="?([^"\s]+)"?'
)


class Action(enum.Enum):
    """What the writer does with the batch."""

    WRITTEN = "written"  # settled: all (or all but the rejected) lines are in
    REJECTED = "rejected"  # settled: InfluxDB refused the lines; do not resend
    SPLIT = "split"  # too large: send each half
    RETRY = "retry"  # keep the data and try again after a wait


class Body(enum.Enum):
    """What kind of body came with the status."""

    NONE = "none"  # no answer at all (network error) or an empty body on 2xx
    INFLUX = "influx"  # InfluxDB's own JSON error
    PARTIAL = "partial"  # InfluxDB's own JSON error reporting a partial write
    FOREIGN = "foreign"  # anything else: HTML, plain text, empty on an error status


@dataclass(frozen=True)
class Row:
    """One line of the table: the action and how to report it."""

    action: Action
    event: str | None = None  # log event name; None: nothing worth a line
    level: str = "error"
    hint: str = ""


_URL_HINT: Final = (
    "this answer is not InfluxDB's: check influx.url (a proxy, a wrong port?); "
    "data is kept and retried"
)
_AUTH_HINT: Final = "check influx.username/password or token; data is kept and retried"
_DB_HINT: Final = "check influx.database/bucket (and influx.url); data is kept and retried"

_OK: Final = Row(Action.WRITTEN)
_PARTIAL: Final = Row(Action.WRITTEN, "influx_partial_write", "error")
_REJECT: Final = Row(Action.REJECTED, "influx_rejected_lines", "error")
_FOREIGN: Final = Row(Action.RETRY, "influx_write_not_influx", "error", _URL_HINT)
_AUTH: Final = Row(Action.RETRY, "influx_write_refused", "error", _AUTH_HINT)
_NOT_FOUND: Final = Row(Action.RETRY, "influx_write_refused", "error", _DB_HINT)
_BUSY: Final = Row(Action.RETRY, "influx_write_failed", "warning")
_OTHER: Final = Row(Action.RETRY, "influx_write_failed", "error", _URL_HINT)

# (status class, body kind) -> row; a missing body kind falls back to "*".
TABLE: Final[Mapping[tuple[str, str], Row]] = {
    ("2xx", "*"): _OK,
    ("2xx", "partial"): _PARTIAL,
    ("400", "influx"): _REJECT,
    ("400", "partial"): _PARTIAL,
    ("400", "*"): _FOREIGN,
    ("422", "influx"): _REJECT,
    ("422", "partial"): _PARTIAL,
    ("422", "*"): _FOREIGN,
    ("401", "*"): _AUTH,
    ("403", "*"): _AUTH,
    ("404", "*"): _NOT_FOUND,
    ("413", "*"): Row(Action.SPLIT, "influx_batch_split", "info"),
    ("413", "single"): Row(Action.REJECTED, "influx_line_too_large", "error"),
    ("429", "*"): _BUSY,
    ("5xx", "*"): _BUSY,
    ("network", "*"): Row(Action.RETRY, "influx_unreachable", "warning"),
    ("other", "*"): _OTHER,
}


@dataclass(frozen=True)
class Verdict:
    """The table's answer for one response to ``lines`` lines."""

    action: Action
    written: int = 0
    rejected: int = 0
    retry_after: float | None = None  # the server's wish, capped; None: own backoff
    event: str | None = None
    level: str = "error"
    hint: str = ""
    series: tuple[str, ...] = ()  # series/accounts a partial write named
    missing_database: bool = False  # a 404 that says "database not found"


def status_class(status: int | None) -> str:
    """The table's key for a status (None: no answer)."""
    if status is None:
        return "network"
    if 200 <= status < 300:
        return "2xx"
    if status in (400, 401, 403, 404, 413, 422, 429):
        return str(status)
    return "5xx" if 500 <= status < 600 else "other"


def influx_message(body: str) -> str | None:
    """InfluxDB's own error message in ``body`` (v1 ``error``, v2 ``message``); None if not."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    message = data.get("error")
    if message is None and "code" in data:  # v2: {"code": ..., "message": ...}
        message = data.get("message")
    return message if isinstance(message, str) else None


def body_kind(body: str) -> Body:
    """Whether ``body`` is InfluxDB's own error (and a partial write), or not."""
    if not body.strip():
        return Body.NONE
    message = influx_message(body)
    if message is None:
        return Body.FOREIGN
    return Body.PARTIAL if "partial write" in message else Body.INFLUX


def lookup(status: int | None, kind: Body, lines: int) -> Row:
    """The table row for an answer."""
    key = status_class(status)
    name = "single" if key == "413" and lines == 1 else kind.value
    return TABLE.get((key, name)) or TABLE[(key, "*")]


def series_named(body: str) -> tuple[str, ...]:
    """The measurements and tag values a partial-write message names."""
    named: list[str] = []
    for match in _SERIES.finditer(body):
        text = match[1] or f"{match[2]}={match[3]}"
        if text not in named:
            named.append(text)
    return tuple(named)


def rejected_by(body: str, lines: int) -> int:
    """How many of ``lines`` a partial-write body says were dropped (never more than all)."""
    dropped = sum(int(n) for n in _DROPPED.findall(body)) + len(_UNPARSABLE.findall(body))
    return min(lines, dropped)


def decide(
    status: int | None,
    headers: Mapping[str, str],
    body: str,
    lines: int,
    now: float,
) -> Verdict:
    """The verdict for a ``status`` (None: network error) with ``headers`` and ``body``."""
    kind = body_kind(body) if status is not None else Body.NONE
    row = lookup(status, kind, lines)
    wait = retry_after(headers.get("retry-after"), now) if row.action is Action.RETRY else None
    base = Verdict(row.action, event=row.event, level=row.level, hint=row.hint)
    if row is _PARTIAL:
        message = influx_message(body) or ""
        rejected = rejected_by(message, lines)
        return _replace(base, lines - rejected, rejected, series=series_named(message))
    if row.action is Action.WRITTEN:
        return _replace(base, lines, 0)
    if row.action is Action.REJECTED:
        return _replace(base, 0, lines)
    retry = _replace(base, 0, 0, wait=None if wait is None else min(wait, MAX_RETRY_AFTER))
    if status == 404 and "database not found" in (influx_message(body) or ""):
        return dataclasses.replace(retry, missing_database=True)
    return retry


def _replace(
    verdict: Verdict,
    written: int,
    rejected: int,
    *,
    wait: float | None = None,
    series: tuple[str, ...] = (),
) -> Verdict:
    return Verdict(
        verdict.action,
        written,
        rejected,
        wait,
        verdict.event,
        verdict.level,
        verdict.hint,
        series,
    )


def retry_delay(
    verdict: Verdict,
    failures: int,
    rng: random.Random,
    base: float = BASE_BACKOFF,
    cap: float = MAX_BACKOFF,
) -> float:
    """Seconds before retrying after ``failures`` failures in a row: the server's wish
    (capped) if it gave one, else exponential backoff with jitter."""
    if verdict.retry_after is not None:
        return verdict.retry_after
    return backoff_delay(failures, base, cap, rng)
