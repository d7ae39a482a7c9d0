"""Every line the encoder makes for Gate-shaped input parses back to the point it came from.

Two readers: a small line-protocol parser written from InfluxDB 1.x's rules
(it unescapes ``\\,`` ``\\ `` ``\\=`` in names and ``\\"`` ``\\\\`` in string
values, nothing else), and the real InfluxDB, which stores a sample and gives
it back through InfluxQL.
"""

from __future__ import annotations

import math
import re
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.gate.protocol import ASSET_DETAIL, ASSETS, Update
from collector.points import schema
from collector.points.book import AccountBook
from collector.points.lineproto import (
    FieldValue,
    FloatText,
    Point,
    encode,
    float_text,
    number_field,
)
from collector.points.normalize import Normalizer
from tests.servers import InfluxServer

_FLOAT: re.Pattern[str] = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_NAME_ESCAPES = frozenset(", =")
_MEASUREMENT_ESCAPES = frozenset(", ")

Parsed = tuple[str, dict[str, str], dict[str, FieldValue], int]


def _read(line: str, i: int, stops: str, escapes: frozenset[str]) -> tuple[str, int]:
    """Text from ``i`` up to an unescaped stop character."""
    out: list[str] = []
    while i < len(line) and line[i] not in stops:
        if line[i] == "\\" and i + 1 < len(line) and line[i + 1] in escapes:
            out.append(line[i + 1])
            i += 2
        else:
            out.append(line[i])
            i += 1
    return "".join(out), i


def _read_string(line: str, i: int) -> tuple[str, int]:
    """A quoted string field value starting at the opening quote."""
    assert line[i] == '"', line
    out: list[str] = []
    i += 1
    while line[i] != '"':
        if line[i] == "\\" and line[i + 1] in '"\\':
            out.append(line[i + 1])
            i += 2
        else:
            out.append(line[i])
            i += 1
    return "".join(out), i + 1


def _value(token: str) -> FieldValue:
    if token in ("true", "false"):
        return token == "true"
    if token.endswith("i"):
        return int(token[:-1])
    assert _FLOAT.fullmatch(token), f"not a line-protocol float: {token!r}"
    return float(token)


def parse_line(line: str) -> Parsed:
    """measurement, tags, fields, timestamp of one line; AssertionError when malformed."""
    assert "\n" not in line
    measurement, i = _read(line, 0, ", ", _MEASUREMENT_ESCAPES)
    tags: dict[str, str] = {}
    while line[i] == ",":
        key, i = _read(line, i + 1, "=", _NAME_ESCAPES)
        assert line[i] == "=", line
        tags[key], i = _read(line, i + 1, ", ", _NAME_ESCAPES)
    assert line[i] == " ", line
    fields: dict[str, FieldValue] = {}
    i += 1
    while True:
        key, i = _read(line, i, "=", _NAME_ESCAPES)
        assert line[i] == "=" and key not in fields, line
        if line[i + 1] == '"':
            fields[key], i = _read_string(line, i + 1)
        else:
            token, i = _read(line, i + 1, ", ", frozenset())
            fields[key] = _value(token)
        if line[i] == " ":
            break
        assert line[i] == ",", line
        i += 1
    stamp = line[i + 1 :]
    assert stamp.isdigit(), line
    return measurement, tags, fields, int(stamp)


def expected_of(point: Point) -> Parsed:
    """What a reader must get back: non-empty tags, finite fields, numbers as numbers."""
    fields: dict[str, FieldValue] = {}
    for key, value in point.fields.items():
        if type(value) is FloatText:
            fields[key] = float(value)
        elif type(value) is float and not math.isfinite(value):
            continue
        else:
            fields[key] = value
    tags = {key: value for key, value in point.tags if key and value}
    return point.measurement, tags, fields, point.time_ms


# -- Gate-shaped input ------------------------------------------------------------------


def _decimal(negative: bool, whole: int, fraction: str | None) -> str:
    text = f"-{whole}" if negative else str(whole)
    return f"{text}.{fraction}" if fraction else text


# Gate's decimal strings, e.g. "-1005719.51", "0.000000".
decimals = st.builds(
    _decimal,
    st.booleans(),
    st.integers(min_value=0, max_value=10**12),
    st.none() | st.text("0123456789", min_size=1, max_size=12),
)
gate_numbers = st.one_of(
    decimals,
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**15), max_value=10**15),
)
currencies = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", min_size=1, max_size=12)
# Text an operator or the collector writes: printable (InfluxDB 1.x takes no newline
# in a value). A label's trailing backslash is the one thing line protocol cannot
# carry (it would escape the space after it): see the test of that loss below.
printable = st.characters(blacklist_categories=("Cc", "Cs"))
labels = st.text(printable, max_size=20).filter(lambda s: not s.endswith("\\"))
accounts = st.integers(min_value=1, max_value=10**9)
stamps = st.integers(min_value=0, max_value=2**52)


@st.composite
def gate_updates(draw: st.DrawFn) -> tuple[int, str, Update]:
    account = draw(accounts)
    channel = draw(st.sampled_from([ASSETS, ASSET_DETAIL]))
    # u and u + 1 never the account's id: that would make u an identity (sequence.py)
    # and the second result a mismatch, rejected: not what this test is about
    u = draw(st.integers(min_value=1, max_value=2**40).filter(lambda n: account - n not in (0, 1)))
    results: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(min_value=1, max_value=2))):
        if channel == ASSETS:
            result: dict[str, Any] = draw(
                st.dictionaries(
                    st.sampled_from(sorted(schema.ASSETS_FIELDS)), gate_numbers, max_size=5
                )
            )
        else:
            short = st.sampled_from(sorted(schema.DETAIL_FIELDS))
            result = {
                "dts": draw(
                    st.dictionaries(
                        currencies, st.dictionaries(short, gate_numbers, max_size=5), max_size=3
                    )
                )
            }
        result["u"] = u
        result["t"] = draw(st.integers(min_value=0, max_value=2**32))
        results.append(result)
        u += 1
    update = Update(channel, results, None, draw(stamps))
    return account, draw(labels), update


def reference_points(account: int, label: str, update: Update) -> list[Point]:
    """The points the former path made of ``update`` (a Point per line, checked by
    ``number_field``): what the direct lines must equal, text for text."""
    out: list[Point] = []
    account_tags = ((schema.TAG_ACCOUNT, str(account)), (schema.TAG_ACCOUNT_LABEL, label))
    # what the account's facts leave of the values (modes, units: tested in test_book.py)
    facts = AccountBook().facts(account)
    stamp = update.time_ms or 0
    for result in update.results:
        common: dict[str, FieldValue] = {}
        for name, raw in (
            (schema.FIELD_U, result.get("u")),
            (schema.FIELD_REFRESH_TIME, result.get("t")),
        ):
            if type(raw) is int:
                common[name] = raw
        parts: list[tuple[str, tuple[tuple[str, str], ...], dict[str, Any], dict[str, str]]]
        if update.channel == ASSETS:
            values = {k: v for k, v in result.items() if k not in schema.ASSETS_SKIP}
            values = facts.assets(values, stamp)
            parts = [(schema.ASSETS, account_tags, values, schema.ASSETS_FIELDS)]
        else:
            parts = [
                (
                    schema.ASSET_DETAIL,
                    (*account_tags, (schema.TAG_CURRENCY, c)),
                    facts.detail(c, v, stamp),
                    schema.DETAIL_FIELDS,
                )
                for c, v in result["dts"].items()
            ]
        for measurement, tags, values, names in parts:
            fields: dict[str, FieldValue] = {}
            for key, raw in values.items():
                number = number_field(raw)
                if number is not None:
                    fields[names.get(key, key)] = number
            if fields:
                fields.update(common)
                out.append(Point(measurement, tags, fields, update.time_ms or 0))
    return out


@settings(max_examples=100, deadline=None)
@given(gate_updates())
def test_every_line_from_a_gate_update_parses_back(case: tuple[int, str, Update]) -> None:
    account, label, update = case
    lines = Normalizer(account, label).normalize(update).lines
    expected = reference_points(account, label, update)
    # the direct text is the encoder's (proved equal to influxdb_client's) for the same point
    assert lines == [encode(point) for point in expected]
    assert [parse_line(line) for line in lines] == [expected_of(point) for point in expected]


@settings(max_examples=100, deadline=None)
@given(
    measurement=st.sampled_from([schema.ASSETS, schema.ASSET_DETAIL, schema.COLLECTOR_STATS]),
    account=accounts,
    label=labels,
    currency=currencies,
    fields=st.dictionaries(
        st.sampled_from(sorted(schema.DETAIL_FIELDS.values())),
        st.one_of(
            decimals.map(float_text),
            st.floats(),
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
            st.booleans(),
            st.text(printable, max_size=12),
        ),
        min_size=1,
    ),
    time_ms=stamps,
)
def test_every_line_of_any_field_type_parses_back(
    measurement: str,
    account: int,
    label: str,
    currency: str,
    fields: dict[str, FieldValue],
    time_ms: int,
) -> None:
    tags = (
        (schema.TAG_ACCOUNT, str(account)),
        (schema.TAG_ACCOUNT_LABEL, label),
        (schema.TAG_CURRENCY, currency),
    )
    point = Point(measurement, tags, fields, time_ms)
    line = encode(point)
    if line is None:
        assert all(type(v) is float and not math.isfinite(v) for v in fields.values())
        return
    assert parse_line(line) == expected_of(point)


def test_a_trailing_backslash_in_a_tag_value_is_the_known_loss() -> None:
    # It becomes an escaped space, exactly as influxdb_client writes it.
    line = encode(Point("m", (("label", "desk\\"),), {"f": 1}, 1))
    assert line == "m,label=desk\\  f=1i 1"
    assert parse_line(line or "")[1] == {"label": "desk "}


# -- the real InfluxDB ----------------------------------------------------------------

SAMPLE: list[Point] = [
    Point(
        schema.ASSET_DETAIL,
        (
            (schema.TAG_ACCOUNT, "100001"),
            (schema.TAG_ACCOUNT_LABEL, 'desk a, "EU"=1 \\x'),
            (schema.TAG_CURRENCY, "BTC"),
        ),
        {
            schema.DETAIL_AVAILABLE: FloatText("1086390.949548"),
            schema.DETAIL_FREEZE: FloatText("-0.5"),
            schema.FIELD_U: 11027732,
            "note": 'say "hi", \\ there',
            "flag": True,
            "rate": 1.25e-7,
        },
        1716796362915,
    ),
    Point(
        schema.ASSETS,
        ((schema.TAG_ACCOUNT, "100002"), (schema.TAG_ACCOUNT_LABEL, "ünïcode label")),
        {schema.EQUITY: FloatText("2.5E-3"), schema.FIELD_REFRESH_TIME: 1716796364},
        1716796362000,
    ),
]


@pytest.mark.influx
def test_a_sample_written_to_influxdb_reads_back_equal(influxdb: InfluxServer) -> None:
    db = "lineproto_roundtrip"
    influxdb.create_database(db)
    body = "\n".join(line for point in SAMPLE if (line := encode(point)))
    response = httpx.post(
        f"{influxdb.url}/write", params={"db": db, "precision": "ms"}, content=body, timeout=30
    )
    assert response.status_code == 204, response.text
    for point in SAMPLE:
        measurement, tags, fields, time_ms = expected_of(point)
        answer = influxdb.query(f'SELECT * FROM "{measurement}"', db=db)
        series = answer["results"][0]["series"]  # type: ignore[index]
        assert len(series) == 1
        row = dict(zip(series[0]["columns"], series[0]["values"][0], strict=True))
        assert row.pop("time") == time_ms
        assert {k: row.pop(k) for k in tags} == tags
        assert {k: v for k, v in row.items() if v is not None} == fields
