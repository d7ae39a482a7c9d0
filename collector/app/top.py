"""``gate-collector top``: a live view of a running collector's ``/status``.

Like ``vector top``: sessions by state, updates per second (pushes only, not
pongs or acks), whether InfluxDB takes writes, the backlog, and the accounts
sorted by a key the user picks (worst first by default), each with its data
silence: seconds since its last push ("push s") and since its newest data, push
or snapshot ("data s"). The screen is cut to the terminal's size. Redraws in
place with ANSI clear/home every ``interval`` seconds; ``q`` or Ctrl-C quits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import termios
import tty
from collections.abc import Callable, Iterator
from typing import Any, Final

import httpx
import orjson
import trio

from collector.supervisor import account_state as account_status

CLEAR_HOME: Final = "\x1b[H\x1b[2J"
STATE_ORDER: Final = account_status.STATES  # the states /status counts, active first
HEADER_LINES: Final = 9  # lines above the account rows (render's header)
NEVER: Final = float("inf")


def _age(row: dict[str, Any], key: str) -> float:
    """An age in seconds from a /status row (inf: never)."""
    value = row.get(key)
    return float(value) if isinstance(value, int | float) else NEVER


def data_silence(row: dict[str, Any]) -> float:
    """Seconds since the account's newest data, pushed or by snapshot (inf: none yet)."""
    return min(_age(row, "last_data_age"), _age(row, "last_snapshot_age"))


# `top --sort` keys (the parser lists the same names): each a row -> sort key, smallest first.
SORTS: Final[dict[str, Callable[[dict[str, Any]], tuple[Any, ...]]]] = {
    "worst": lambda r: (
        r.get("state") == account_status.ACTIVE,
        -data_silence(r),
        -int(r.get("gaps", 0)),
        -int(r.get("reconnects", 0)),
    ),
    "silence": lambda r: (-_age(r, "last_data_age"), -data_silence(r)),
    "gaps": lambda r: (-int(r.get("gaps", 0)),),
    "reconnects": lambda r: (-int(r.get("reconnects", 0)),),
    "account": lambda r: (int(r.get("account", 0)),),
}


def _seconds(age: float) -> str:
    return "never" if age == NEVER else f"{age:.0f}"


def _delivery_line(status: dict[str, Any]) -> str:
    """Whether InfluxDB takes writes; loud when it does not."""
    delivery = status.get("delivery") or {}
    if not delivery:
        return "influxdb  (not reported)"
    oldest = delivery.get("oldest_unsent_seconds", 0)
    if delivery.get("influx_up"):
        return f"influxdb  taking writes   oldest waiting point {oldest} s"
    last = delivery.get("last_success_age")
    since = "not since start" if last is None else f"last took a write {last} s ago"
    return f"influxdb  NOT TAKING WRITES: {since}; oldest waiting point {oldest} s"


def _header(status: dict[str, Any], url: str) -> list[str]:
    stats, rates = status.get("stats", {}), status.get("rates", {})
    sessions = status.get("sessions", {})
    ready = "ready" if status.get("ready") else "NOT READY"
    states = [s for s in STATE_ORDER if s in sessions]
    states += sorted(s for s in sessions if s not in STATE_ORDER)
    return [
        f"gate-collector {status.get('version', '?')}  {status.get('instance', '?')}  "
        f"shard {status.get('shard', '?')}  {url}   (q quits)",
        f"{ready}: {status.get('reason', '')}",
        "sessions  " + "  ".join(f"{state} {sessions[state]}" for state in states),
        f"updates/s {rates.get('updates_received_per_s', 0):>10}   "
        f"points/s {rates.get('points_written_per_s', 0):>10}",
        _delivery_line(status),
        f"backlog   buffer {stats.get('buffer_size', 0)} points   "
        f"spool {stats.get('spool_bytes', 0)} bytes   dropped {stats.get('points_dropped', 0)}   "
        f"write errors {stats.get('write_errors', 0)}",
        f"totals    updates {stats.get('updates_received', 0)}   "
        f"written {stats.get('points_written', 0)}   gaps {stats.get('gaps', 0)}   "
        f"reconnects {stats.get('reconnects', 0)}",
        "",
    ]


def _row(row: dict[str, Any]) -> str:
    return (
        f"{row.get('account', '?'):>10}  {row.get('state', '?'):<14}"
        f"{row.get('updates', '-'):>8}{row.get('gaps', '-'):>6}{row.get('reconnects', '-'):>8}"
        f"{_seconds(_age(row, 'last_data_age')):>9}{_seconds(data_silence(row)):>9}"
    )


def render(
    status: dict[str, Any], url: str, sort: str = "worst", size: tuple[int, int] = (120, 40)
) -> str:
    """The screen for one ``/status`` document (pure), cut to ``size`` (columns, lines)."""
    columns, lines = size
    accounts = sorted(status.get("accounts", []), key=SORTS[sort])
    room = max(0, lines - HEADER_LINES)
    shown = accounts if len(accounts) <= room else accounts[: max(0, room - 1)]
    screen = [
        *_header(status, url),
        f"{'account':>10}  {'state':<14}{'updates':>8}{'gaps':>6}{'reconn':>8}"
        f"{'push s':>9}{'data s':>9}   by {sort}",
        *map(_row, shown),
    ]
    if len(shown) < len(accounts):
        screen.append(f"(+{len(accounts) - len(shown)} more)")
    return "\n".join(line[:columns] for line in screen) + "\n"


@contextlib.contextmanager
def _keys_without_enter() -> Iterator[None]:
    """cbreak mode on a terminal (a key arrives without Enter); restored on exit."""
    if not os.isatty(sys.stdin.fileno()):
        yield
        return
    saved = termios.tcgetattr(sys.stdin.fileno())
    tty.setcbreak(sys.stdin.fileno())
    try:
        yield
    finally:
        termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)


async def _wait_for_q() -> None:
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stream:
        while True:
            data = await stream.receive_some(64)
            if not data or b"q" in data.lower():
                return


async def _fetch(http: httpx.AsyncClient, url: str, sort: str) -> str:
    try:
        response = await http.get(f"{url}/status")
        response.raise_for_status()
        size = shutil.get_terminal_size()
        return render(orjson.loads(response.content), url, sort, (size.columns, size.lines - 1))
    except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
        return f"gate-collector top: cannot read {url}/status: {exc!r}\n(retrying; q quits)\n"


async def run(url: str, interval: float = 1.0, sort: str = "worst") -> int:
    """Redraw until q, Ctrl-C or end of input."""
    url = url.rstrip("/")
    with _keys_without_enter():
        async with httpx.AsyncClient(timeout=interval * 3) as http, trio.open_nursery() as nursery:

            async def quit_on_q() -> None:
                await _wait_for_q()
                nursery.cancel_scope.cancel()

            nursery.start_soon(quit_on_q)
            while True:
                screen = await _fetch(http, url, sort)
                sys.stdout.write(CLEAR_HOME + screen)
                sys.stdout.flush()
                await trio.sleep(interval)
    return 0
