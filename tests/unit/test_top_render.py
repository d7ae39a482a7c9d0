"""What ``gate-collector top`` draws from a ``/status`` document (pure): data silence
per account, the user's sort key, the terminal's size, and InfluxDB not taking writes."""

from __future__ import annotations

from typing import Any

from collector.app.top import render

QUIET = {"account": 7, "state": "active", "updates": 0, "gaps": 0, "reconnects": 0,
         "last_data_age": None, "last_snapshot_age": 250.0}  # fmt: skip
BUSY = {"account": 8, "state": "active", "updates": 900, "gaps": 0, "reconnects": 0,
        "last_data_age": 0.4, "last_snapshot_age": 30.0}  # fmt: skip
GAPPY = {"account": 9, "state": "active", "updates": 400, "gaps": 5, "reconnects": 2,
         "last_data_age": 2.0, "last_snapshot_age": 40.0}  # fmt: skip
REFUSED = {"account": 10, "state": "refused", "updates": 0, "gaps": 0, "reconnects": 0}


def status(**extra: Any) -> dict[str, Any]:
    return {
        "ready": True, "reason": "3/3 sessions connected", "sessions": {"active": 3},
        "rates": {"updates_received_per_s": 12.5, "frames_received_per_s": 99.0},
        "stats": {}, "accounts": [BUSY, QUIET, GAPPY, REFUSED],
        "delivery": {"influx_up": True, "last_success_age": 0.5, "oldest_unsent_seconds": 0.3},
        **extra,
    }  # fmt: skip


def account_rows(screen: str) -> list[str]:
    lines = screen.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("account"))
    return [line.split()[0] for line in lines[start + 1 :]]


def test_updates_per_second_are_pushes_not_frames() -> None:
    assert "updates/s       12.5" in render(status(), "u")


def test_a_quiet_account_shows_its_silence_and_comes_first_of_the_active() -> None:
    screen = render(status(), "u")
    assert account_rows(screen) == ["10", "7", "9", "8"]  # not active, then the most silent
    [quiet] = [line for line in screen.splitlines() if line.split()[:1] == ["7"]]
    assert quiet.split()[-2:] == ["never", "250"]  # never pushed; newest data 250 s old


def test_the_user_picks_the_sort_key() -> None:
    assert account_rows(render(status(), "u", sort="gaps"))[0] == "9"
    assert account_rows(render(status(), "u", sort="account")) == ["7", "8", "9", "10"]
    assert account_rows(render(status(), "u", sort="silence"))[:1] in (["7"], ["10"])


def test_the_screen_fits_the_terminal() -> None:
    many = [{**BUSY, "account": 1000 + i} for i in range(200)]
    screen = render(status(accounts=many), "u" * 300, size=(60, 24))
    lines = screen.splitlines()
    assert len(lines) <= 24
    assert max(map(len, lines)) <= 60
    assert "(+186 more)" in screen


def test_influxdb_not_taking_writes_is_said_loudly() -> None:
    down = {"influx_up": False, "last_success_age": 95.0, "oldest_unsent_seconds": 96.2}
    screen = render(status(delivery=down), "u")
    assert (
        "influxdb  NOT TAKING WRITES: last took a write 95.0 s ago; oldest waiting point 96.2 s"
        in screen
    )
    never = render(status(delivery={**down, "last_success_age": None}), "u")
    assert "NOT TAKING WRITES: not since start" in never
    assert "influxdb  taking writes" in render(status(), "u")
