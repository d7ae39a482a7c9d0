"""µs per gate_unified_asset_detail point: our encoder vs influxdb_client.Point (one run)."""

from __future__ import annotations

import time

from influxdb_client import Point as ClientPoint
from influxdb_client import WritePrecision

from collector.points.lineproto import Encoder, Point, float_text
from tests.bench.harness import record

N = 50_000
FIELDS = ("available", "freeze", "equity", "total_liab", "balance")


def make_points(as_text: bool = False) -> list[Point]:
    def value(x: float) -> object:
        return float_text(f"{x:.6f}") if as_text else x

    return [
        Point(
            "gate_unified_asset_detail",
            (
                ("account", str(100_000 + i % 100)),
                ("account_label", f"sub-{i % 100}"),
                ("currency", ("BTC", "ETH", "USDT")[i % 3]),
            ),
            {
                **{name: value(1000.123456 + i + k) for k, name in enumerate(FIELDS)},
                "u": i,
                "refresh_time": 1_716_796_364,
            },
            1_716_796_362_915 + i,
        )
        for i in range(N)
    ]


def ours(points: list[Point]) -> float:
    encoder = Encoder()
    start = time.perf_counter()
    for point in points:
        encoder.encode(point)
    return (time.perf_counter() - start) / len(points) * 1e6


def reference(points: list[Point]) -> float:
    start = time.perf_counter()
    for point in points:
        p = ClientPoint(point.measurement).time(point.time_ms, WritePrecision.MS)
        for key, value in point.tags:
            p.tag(key, value)
        for key, value in point.fields.items():
            p.field(key, value)
        p.to_line_protocol()
    return (time.perf_counter() - start) / len(points) * 1e6


def test_lineproto_speed() -> None:
    points = make_points()
    ours(points[:1000])
    reference(points[:1000])
    as_text = make_points(as_text=True)
    mine, text, theirs = ours(points), ours(as_text), reference(points)
    record(
        "Line protocol",
        f"{N} asset_detail points (7 fields, 3 tags), one encoder after the other:\n\n"
        f"| encoder | µs/point |\n|---|---|\n"
        f"| collector.points.lineproto, Gate's decimal strings (FloatText) | {text:.2f} |\n"
        f"| collector.points.lineproto, Python floats | {mine:.2f} |\n"
        f"| influxdb_client.Point | {theirs:.2f} |\n\n"
        f"ratio influxdb_client/ours: {theirs / text:.1f}x with decimal strings, "
        f"{theirs / mine:.1f}x with floats (goal: ours <= 3 µs)",
    )
