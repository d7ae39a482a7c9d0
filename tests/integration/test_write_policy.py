"""The write policy, one row per status class and body kind, then the same against real servers."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from collector.config import InfluxSettings
from collector.sink.policy import (
    MAX_RETRY_AFTER,
    Action,
    Verdict,
    decide,
    retry_delay,
)
from collector.sink.request import write_request
from tests.servers import (
    InfluxServer,
    VictoriaMetrics,
    free_port,
    influx_server,
    victoria_metrics,
)

NOW = 1_700_000_000.0
INFLUX_400 = '{"error":"unable to parse \'m f=\': missing field value"}'
PARTIAL_TYPE = (
    '{"error":"partial write: field type conflict: input field \\"f\\" on measurement '
    '\\"m\\" is type string, already exists as type float dropped=1"}'
)
PARTIAL_TAGS = (
    '{"error":"partial write: max-values-per-tag limit exceeded (3/3): '
    'measurement=\\"gate_unified_asset_detail\\" tag=\\"account\\" value=\\"100042\\" '
    'dropped=3"}'
)
HTML = "<html><head><title>400 Bad Request</title></head><body>nginx</body></html>"
V2_422 = '{"code":"unprocessable entity","message":"failure writing points: field type"}'
V1_WITH_CODE = '{"code":"invalid","error":"unable to parse \'m f=\': missing field value"}'
NOT_A_STRING = '{"error":{"text":"unable to parse"}}'
# The hints an operator reads, pinned by text.
URL_HINT = (
    "this answer is not InfluxDB's: check influx.url (a proxy, a wrong port?); "
    "data is kept and retried"
)
AUTH_HINT = "check influx.username/password or token; data is kept and retried"
DB_HINT = "check influx.database/bucket (and influx.url); data is kept and retried"


@dataclass(frozen=True)
class Case:
    """One row: an answer to a batch of ``lines`` and the verdict it must get."""

    name: str
    status: int | None
    body: str
    lines: int
    action: Action
    written: int = 0
    rejected: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    retry_after: float | None = None
    event: str | None = None
    level: str = "error"
    hint: str = ""
    missing_database: bool = False


CASES = [
    Case("204 empty", 204, "", 10, Action.WRITTEN, written=10),
    Case("200 json", 200, '{"results":[]}', 10, Action.WRITTEN, written=10),
    Case("299: still 2xx", 299, "", 10, Action.WRITTEN, written=10),
    Case("204 partial write", 204, PARTIAL_TAGS, 10, Action.WRITTEN, 7, 3,
         event="influx_partial_write"),
    Case("400 partial: type conflict", 400, PARTIAL_TYPE, 10, Action.WRITTEN, 9, 1,
         event="influx_partial_write"),
    Case("400 influx error: all refused", 400, INFLUX_400, 10, Action.REJECTED, 0, 10,
         event="influx_rejected_lines"),
    Case("400 v1 error beside a code: the error wins", 400, V1_WITH_CODE, 10,
         Action.REJECTED, 0, 10, event="influx_rejected_lines"),
    Case("400 error not a string: not influx, kept", 400, NOT_A_STRING, 10, Action.RETRY,
         event="influx_write_not_influx", hint=URL_HINT),
    Case("400 html: not influx, kept", 400, HTML, 10, Action.RETRY,
         event="influx_write_not_influx", hint=URL_HINT),
    Case("400 empty: not influx, kept", 400, "", 10, Action.RETRY,
         event="influx_write_not_influx", hint=URL_HINT),
    Case("400 plain text", 400, "Bad Request", 10, Action.RETRY, event="influx_write_not_influx",
         hint=URL_HINT),
    Case("401", 401, '{"error":"authorization failed"}', 10, Action.RETRY,
         event="influx_write_refused", hint=AUTH_HINT),
    Case("403", 403, "", 10, Action.RETRY, event="influx_write_refused", hint=AUTH_HINT),
    Case("404", 404, '{"error":"database not found: \\"x\\""}', 10, Action.RETRY,
         event="influx_write_refused", hint=DB_HINT, missing_database=True),
    Case("404 html: not a missing database", 404, HTML, 10, Action.RETRY,
         event="influx_write_refused", hint=DB_HINT),
    Case("404 other error: not a missing database", 404, '{"error":"page not found"}', 10,
         Action.RETRY, event="influx_write_refused", hint=DB_HINT),
    Case("413 batch", 413, '{"error":"Request Entity Too Large"}', 10, Action.SPLIT,
         event="influx_batch_split", level="info"),
    Case("413 single line", 413, "", 1, Action.REJECTED, 0, 1, event="influx_line_too_large"),
    Case("422 influx v2 body", 422, V2_422, 10, Action.REJECTED, 0, 10,
         event="influx_rejected_lines"),
    Case("422 influx v1 body", 422, INFLUX_400, 4, Action.REJECTED, 0, 4,
         event="influx_rejected_lines"),
    Case("422 html", 422, HTML, 4, Action.RETRY, event="influx_write_not_influx",
         hint=URL_HINT),
    Case("429 no Retry-After", 429, "", 10, Action.RETRY, event="influx_write_failed",
         level="warning"),
    Case("429 Retry-After 7", 429, "", 10, Action.RETRY, headers=(("retry-after", "7"),),
         retry_after=7.0, event="influx_write_failed", level="warning"),
    Case("429 Retry-After a day: capped", 429, "", 10, Action.RETRY,
         headers=(("retry-after", "86400"),), retry_after=MAX_RETRY_AFTER,
         event="influx_write_failed", level="warning"),
    Case("429 Retry-After as a date", 429, "", 10, Action.RETRY,
         headers=(("retry-after", "Tue, 14 Nov 2023 22:13:40 GMT"),), retry_after=20.0,
         event="influx_write_failed", level="warning"),
    Case("500", 500, '{"error":"timeout"}', 10, Action.RETRY, event="influx_write_failed",
         level="warning"),
    Case("500 database not found: only a 404 says so", 500, '{"error":"database not found"}',
         10, Action.RETRY, event="influx_write_failed", level="warning"),
    Case("503 html", 503, HTML, 10, Action.RETRY, event="influx_write_failed",
         level="warning"),
    Case("599: still 5xx", 599, "", 10, Action.RETRY, event="influx_write_failed",
         level="warning"),
    Case("network error", None, "", 10, Action.RETRY, event="influx_unreachable",
         level="warning"),
    Case("302 redirect", 302, "", 10, Action.RETRY, event="influx_write_failed",
         hint=URL_HINT),
    Case("300: not 2xx, kept", 300, "", 10, Action.RETRY, event="influx_write_failed",
         hint=URL_HINT),
    Case("430: not a 429", 430, "", 10, Action.RETRY, event="influx_write_failed",
         hint=URL_HINT),
    Case("600: not 5xx", 600, "", 10, Action.RETRY, event="influx_write_failed",
         hint=URL_HINT),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_policy_table(case: Case) -> None:
    verdict = decide(case.status, dict(case.headers), case.body, case.lines, NOW)
    got = (verdict.action, verdict.written, verdict.rejected, verdict.retry_after, verdict.event)
    want = (case.action, case.written, case.rejected, case.retry_after, case.event)
    assert got == want
    assert (verdict.level, verdict.hint) == (case.level, case.hint)
    assert verdict.missing_database is case.missing_database


def test_partial_write_names_the_series() -> None:
    verdict = decide(400, {}, PARTIAL_TAGS, 10, NOW)
    assert verdict.series == ("gate_unified_asset_detail", "account=100042")


def test_unparsable_lines_count_one_each_and_never_more_than_the_batch() -> None:
    two = "{\"error\":\"partial write: unable to parse 'a': x\\nunable to parse 'b': y dropped=0\"}"
    assert decide(400, {}, two, 10, NOW).rejected == 2
    assert decide(400, {}, PARTIAL_TAGS, 2, NOW).rejected == 2


def test_backoff_grows_to_its_cap_and_a_retry_after_wins() -> None:
    retry = Verdict(Action.RETRY)
    delays = [retry_delay(retry, n, random.Random(1), base=1.0, cap=16.0) for n in range(1, 9)]
    ceilings = [1, 2, 4, 8, 16, 16, 16, 16]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert delays[4] > delays[0] * 4  # it grows, not merely jitters
    told = Verdict(Action.RETRY, retry_after=7.0)
    assert retry_delay(told, 5, random.Random(1), base=1.0, cap=16.0) == 7.0


# -- the same statuses from real servers -------------------------------------------


def _line(i: int, value: str = "1.5") -> str:
    return f"gate_unified_asset_detail,account={100_000 + i},currency=BTC available={value}"


def real_verdict(settings: InfluxSettings, lines: list[str]) -> Verdict:
    """POST ``lines`` as the sink would and judge the answer."""
    request = write_request(settings, gzip=False)
    response = httpx.post(
        request.url,
        params=request.params,
        headers=request.headers,
        content="\n".join(lines).encode(),
        auth=request.auth or httpx.USE_CLIENT_DEFAULT,
        timeout=30,
    )
    return decide(response.status_code, response.headers, response.text, len(lines), NOW)


def v1(server: InfluxServer | VictoriaMetrics, database: str, **extra: Any) -> InfluxSettings:
    return InfluxSettings(url=server.url, database=database, **extra)


def test_real_influxdb_statuses(influxdb: InfluxServer) -> None:
    db = f"p_{uuid.uuid4().hex[:10]}"
    influxdb.create_database(db)
    ok = real_verdict(v1(influxdb, db), [_line(i) for i in range(5)])
    assert (ok.action, ok.written) == (Action.WRITTEN, 5)
    conflict = real_verdict(v1(influxdb, db), [_line(9, '"text"'), _line(10)])
    assert (conflict.action, conflict.written, conflict.rejected) == (Action.WRITTEN, 1, 1)
    assert conflict.series == ("gate_unified_asset_detail",)
    unparsable = real_verdict(v1(influxdb, db), ["m f="])
    assert (unparsable.action, unparsable.rejected) == (Action.REJECTED, 1)
    missing = real_verdict(v1(influxdb, "no_such_db"), [_line(1)])
    assert (missing.action, missing.event) == (Action.RETRY, "influx_write_refused")


def test_real_influxdb_413_for_a_batch_and_for_one_line(tmp_path: Path) -> None:
    with influx_server(tmp_path / "small", max_body_size=2000) as small:
        small.create_database("small")
        batch = real_verdict(v1(small, "small"), [_line(i) for i in range(100)])
        assert batch.action is Action.SPLIT
        huge = real_verdict(v1(small, "small"), [_line(1, "1" + "0" * 3000)])
        assert (huge.action, huge.rejected) == (Action.REJECTED, 1)


class AuthInflux(InfluxServer):
    """InfluxDB with ``auth-enabled``: an admin is created before the first write."""

    def _config(self) -> Path:
        config = super()._config()
        config.write_text(config.read_text().replace("[http]\n", "[http]\n  auth-enabled = true\n"))
        return config


def test_real_influxdb_wrong_password_is_401_and_kept(tmp_path: Path) -> None:
    root = tmp_path / "auth"
    root.mkdir()
    server = AuthInflux(root, free_port())
    server.start()
    try:
        admin = "CREATE USER admin WITH PASSWORD 'right' WITH ALL PRIVILEGES"
        httpx.post(f"{server.url}/query", params={"q": admin}, timeout=30).raise_for_status()
        create = {"q": 'CREATE DATABASE "auth"', "u": "admin", "p": "right"}
        httpx.post(f"{server.url}/query", params=create, timeout=30).raise_for_status()
        wrong = real_verdict(v1(server, "x", username="admin", password="wrong"), [_line(1)])
        assert (wrong.action, wrong.event) == (Action.RETRY, "influx_write_refused")
        settings = v1(server, "auth", username="admin", password="right")
        right = real_verdict(settings, [_line(1)])
        assert right.action is Action.WRITTEN
    finally:
        server.stop()


def test_real_victoria_metrics_v2_write(tmp_path: Path) -> None:
    with victoria_metrics(tmp_path / "vm") as vm:
        settings = InfluxSettings(url=vm.url, api="v2", org="o", bucket="b", token="t")
        ok = real_verdict(settings, [_line(i) for i in range(3)])
        assert (ok.action, ok.written) == (Action.WRITTEN, 3)
