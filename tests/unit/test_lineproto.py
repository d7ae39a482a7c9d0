"""Line protocol: equal to influxdb_client's encoder for any names, tags and values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client import Point as ClientPoint
from influxdb_client import WritePrecision

from collector.points import schema
from collector.points.direct import AccountLines
from collector.points.lineproto import Encoder, FloatText, Point, encode, float_text, number_field

names = st.text(min_size=1, max_size=12).filter(lambda s: not s.startswith("#"))
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.text(max_size=12),
)


def reference_line(
    measurement: str, tags: dict[str, str], fields: dict[str, object], time_ms: int
) -> str:
    point = ClientPoint(measurement).time(time_ms, WritePrecision.MS)
    for key, value in tags.items():
        point.tag(key, value)
    for key, value in fields.items():
        point.field(key, value)
    return str(point.to_line_protocol())


def reference_in_order(
    measurement: str, tags: dict[str, str], fields: dict[str, object], time_ms: int
) -> str:
    """influxdb_client's line with the fields in *our* order (it sorts them).

    Each field's text is taken from influxdb_client encoding that field alone,
    so the expectation is built from the reference encoder only.
    """
    stamp = f" {time_ms}"
    probe = reference_line(measurement, tags, {"x": 1}, time_ms)
    series = probe[: -len(" x=1i" + stamp)]
    segments = []
    for key, value in fields.items():
        line = reference_line(measurement, tags, {key: value}, time_ms)
        if line:
            segments.append(line[len(series) + 1 : -len(stamp)])
    return f"{series} {','.join(segments)}{stamp}" if segments else ""


@settings(max_examples=400, deadline=None)
@given(
    measurement=names,
    tags=st.dictionaries(names, st.text(max_size=12), max_size=4),
    fields=st.dictionaries(names, values, min_size=1, max_size=6),
    time_ms=st.integers(min_value=0, max_value=2**52),
)
def test_equal_to_influxdb_client_for_any_point(
    measurement: str, tags: dict[str, str], fields: dict[str, object], time_ms: int
) -> None:
    tag_pairs = tuple(tags.items())
    sorted_fields = dict(sorted(fields.items()))
    expected = reference_line(measurement, tags, fields, time_ms)
    ours = Encoder().encode(Point(measurement, tag_pairs, sorted_fields, time_ms))  # type: ignore[arg-type]
    assert (ours or "") == expected
    # Any field order: the same fields, each encoded as the reference encodes it.
    unsorted = Encoder().encode(Point(measurement, tag_pairs, fields, time_ms))  # type: ignore[arg-type]
    assert (unsorted or "") == reference_in_order(measurement, tags, fields, time_ms)


def test_asset_detail_point_line() -> None:
    point = Point(
        "gate_unified_asset_detail",
        (("currency", "BTC"), ("account", "100001"), ("account_label", "desk a")),
        {"available": 1086390.949548, "freeze": 0.0, "u": 11027732, "refresh_time": 1716796364},
        1716796362915,
    )
    assert encode(point) == (
        "gate_unified_asset_detail,account=100001,account_label=desk\\ a,currency=BTC "
        "available=1086390.949548,freeze=0,u=11027732i,refresh_time=1716796364i 1716796362915"
    )


def test_escaping_of_every_special_character() -> None:
    point = Point(
        "m e,a",
        (("t k=", "v,a l\\"),),
        {"f k": 'say "hi" \\ there', "ok": True},
        1,
    )
    assert encode(point) == (
        'm\\ e\\,a,t\\ k\\==v\\,a\\ l\\  f\\ k="say \\"hi\\" \\\\ there",ok=true 1'
    )


def test_non_finite_floats_are_left_out_and_an_empty_point_is_none() -> None:
    assert encode(Point("m", (), {"a": math.nan, "b": 1.5}, 1)) == "m b=1.5 1"
    assert encode(Point("m", (), {"a": math.inf}, 1)) is None


def test_empty_tag_values_are_left_out() -> None:
    assert encode(Point("m", (("a", ""), ("b", "x")), {"f": 1.0}, 1)) == "m,b=x f=1 1"


@pytest.mark.parametrize(
    "text", ["0", "-1005719.51", "0.000000", "1086390.949548", "1e10", "2.5E-3"]
)
def test_decimal_strings_are_written_as_they_came(text: str) -> None:
    value = float_text(text)
    assert isinstance(value, FloatText)
    assert encode(Point("m", (), {"b": value}, 1)) == f"m b={text} 1"


@pytest.mark.parametrize(
    "text", ["", "nan", "inf", "1_000", " 1", "1,5", "0x10", "1e999", "+1", "1.", ".5", "--1"]
)
def test_anything_but_a_plain_finite_decimal_is_refused(text: str) -> None:
    assert float_text(text) is None


# -- the direct path (collector.points.direct) ----------------------------------

BAD_VALUES = ("1,5", ",", "", "nan", "inf", "1_000", " 1", None, math.nan, math.inf, [1])
finite = st.floats(min_value=-1e15, max_value=1e15, allow_nan=False)
# Gate's texts are plain decimals: exponents of at most two digits.
decimal = finite.filter(lambda x: x == 0 or abs(x) > 1e-90)
gate_value = st.one_of(
    decimal.map(lambda x: ("text", x)),  # Gate's decimal string, as the reference writes x
    finite.map(lambda x: ("float", x)),  # a JSON number
    st.integers(min_value=-(10**15), max_value=10**15).map(lambda n: ("int", n)),
    st.sampled_from(BAD_VALUES).map(lambda bad: ("bad", bad)),
)


def float_field_text(value: float) -> str:
    """How influxdb_client writes a float field."""
    return reference_line("m", {}, {"f": value}, 0)[len("m f=") : -len(" 0")]


def gate_and_reference(
    drawn: dict[str, tuple[str, object]], names: dict[str, str]
) -> tuple[dict[str, object], dict[str, object], int]:
    """Gate's values by short key, the reference's by long name, and how many are bad."""
    gate: dict[str, object] = {}
    reference: dict[str, object] = {}
    bad = 0
    for key, (kind, value) in drawn.items():
        if kind == "bad":
            gate[key] = value
            bad += 1
            continue
        gate[key] = float_field_text(value) if kind == "text" else value  # type: ignore[arg-type]
        reference[names[key]] = float(value)  # type: ignore[arg-type]
    return gate, reference, bad


@settings(max_examples=300, deadline=None)
@given(
    label=st.text(max_size=12),
    currencies=st.dictionaries(
        names,
        st.dictionaries(st.sampled_from(sorted(schema.DETAIL_FIELDS)), gate_value, max_size=8),
        max_size=3,
    ),
    u=st.integers(min_value=0, max_value=2**62),
    t=st.integers(min_value=0, max_value=2**40),
    time_ms=st.integers(min_value=0, max_value=2**52),
)
def test_direct_detail_lines_equal_influxdb_client(
    label: str,
    currencies: dict[str, dict[str, tuple[str, object]]],
    u: int,
    t: int,
    time_ms: int,
) -> None:
    dts: dict[str, object] = {}
    expected: list[str] = []
    bad_total = 0
    for currency, drawn in currencies.items():
        gate, reference, bad = gate_and_reference(drawn, schema.DETAIL_FIELDS)
        dts[currency] = gate
        bad_total += bad
        if reference:
            tags = {"account": "100001", "account_label": label, "currency": currency}
            fields = {**reference, "u": u, "refresh_time": t}
            expected.append(reference_in_order(schema.ASSET_DETAIL, tags, fields, time_ms))
            point = Point(schema.ASSET_DETAIL, tuple(tags.items()), fields, time_ms)  # type: ignore[arg-type]
            assert Encoder().encode(point) == expected[-1]
    lines: list[str] = []
    bad_seen, over_cap = AccountLines(100001, label).detail(
        {"u": u, "t": t, "dts": dts}, time_ms, lines
    )
    assert lines == expected
    assert (bad_seen, over_cap) == (bad_total, 0)


@settings(max_examples=200, deadline=None)
@given(
    label=st.text(max_size=12),
    drawn=st.dictionaries(st.sampled_from(sorted(schema.ASSETS_FIELDS)), gate_value, max_size=9),
    u=st.integers(min_value=0, max_value=2**62),
    time_ms=st.integers(min_value=0, max_value=2**52),
)
def test_direct_assets_line_equals_influxdb_client(
    label: str, drawn: dict[str, tuple[str, object]], u: int, time_ms: int
) -> None:
    gate, reference, bad = gate_and_reference(drawn, schema.ASSETS_FIELDS)
    lines: list[str] = []
    result = {**gate, "u": u, "c": "12"}  # c (a count) and u are not balance fields
    assert AccountLines(100001, label).assets(result, time_ms, lines) == bad
    tags = {"account": "100001", "account_label": label}
    fields = {**reference, "u": u}
    assert lines == (
        [reference_in_order(schema.ASSETS, tags, fields, time_ms)] if reference else []
    )


# -- Rules of points.lineproto that a mutation would break unseen (see tests/MUTATION.md) ----------


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_float_that_is_not_finite_is_not_a_number_field(value: float) -> None:
    # snapshot.py counts a None as an invalid field; the Encoder would drop it silently
    assert number_field(value) is None


@pytest.mark.parametrize(
    ("value", "field"), [(2.5, 2.5), (-0.0, -0.0), (3, 3.0), ("1e5", FloatText("1e5"))]
)
def test_a_finite_number_is_its_field(value: object, field: object) -> None:
    assert number_field(value) == field and type(number_field(value)) is type(field)


def test_the_encoders_caches_are_cleared_when_they_reach_their_bound() -> None:
    # the bound keeps memory flat when keys churn (200 000 in production)
    encoder = Encoder(cache_limit=2)
    for n in range(2):
        assert encoder.encode(Point("m", (("t", str(n)),), {f"f{n}": 1}, 5)) == f"m,t={n} f{n}=1i 5"
    assert encoder.cached == (2, 2)
    assert encoder.encode(Point("m", (("t", "2"),), {"f2": 1}, 5)) == "m,t=2 f2=1i 5"
    assert encoder.cached == (1, 1)  # cleared, then the new one


def test_a_field_of_an_unsupported_type_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match=r"^field 'bad' has unsupported type list$"):
        Encoder().encode(Point("m", (), {"bad": [1]}, 5))  # type: ignore[dict-item]
