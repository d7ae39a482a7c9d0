"""`gate-collector demo`: the README's first command, with and without influxd."""

from __future__ import annotations

import pytest

from collector.app import demo


async def test_demo_collects_into_a_local_influxdb_and_summarises(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await demo.run(accounts=6, duration=4) == 0
    out = capsys.readouterr().out
    assert "InfluxDB 1.x (Debian's influxd)" in out
    assert "sessions connected" in out
    assert "5 accounts with data in InfluxDB database 'gate'" in out  # every 6th is disabled
    # every 3rd account never changes: Gate pushes nothing, a snapshot brings it anyway
    assert "(1 quiet: Gate pushed nothing, their state came by snapshot)" in out
    assert "keys created: 5" in out


async def test_without_influxd_the_demo_prints_line_protocol(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo.shutil, "which", lambda name: None)
    assert await demo.run(accounts=3, duration=3) == 0
    out = capsys.readouterr().out
    assert "influxd is not installed" in out
    assert "line protocol: gate_unified_" in out
