"""``gate-collector top``: a live view of a running collector's ``/status``.

Like ``vector top``: sessions by state, updates and points per second, the
backlog, and the accounts most worth a look. Redraws in place with ANSI
clear/home every ``interval`` seconds; ``q`` or Ctrl-C quits.
"""

from __future__ import annotations

import contextlib
import os
import sys
import termios
import tty
from collections.abc import Iterator
from typing import Any, Final

import httpx
import orjson
import trio

from collector.supervisor import account_state as account_status

CLEAR_HOME: Final = "\x1b[H\x1b[2J"
WORST: Final = 10
STATE_ORDER: Final = account_status.STATES  # the states /status counts, active first


def _worst_first(row: dict[str, Any]) -> tuple[int, int, int, float]:
    """Not active first, then the most gaps, reconnects, the longest silence."""
    age = row.get("last_frame_age")
    return (
        row.get("state") == account_status.ACTIVE,
        -int(row.get("gaps", 0)),
        -int(row.get("reconnects", 0)),
        -(age if isinstance(age, int | float) else float("inf")),
    )


def render(status: dict[str, Any], url: str) -> str:
    """The screen for one ``/status`` document (pure)."""
    stats, rates = status.get("stats", {}), status.get("rates", {})
    sessions = status.get("sessions", {})
    ready = "ready" if status.get("ready") else "NOT READY"
    states = [s for s in STATE_ORDER if s in sessions]
    states += sorted(s for s in sessions if s not in STATE_ORDER)
    lines = [
        f"gate-collector {status.get('version', '?')}  {status.get('instance', '?')}  "
        f"shard {status.get('shard', '?')}  {url}   (q quits)",
        f"{ready}: {status.get('reason', '')}",
        "",
        "sessions  " + "  ".join(f"{state} {sessions[state]}" for state in states),
        f"updates/s {rates.get('frames_received_per_s', 0):>10}   "
        f"points/s {rates.get('points_written_per_s', 0):>10}",
        f"backlog   buffer {stats.get('buffer_size', 0)} points   "
        f"spool {stats.get('spool_bytes', 0)} bytes   dropped {stats.get('points_dropped', 0)}   "
        f"write errors {stats.get('write_errors', 0)}",
        f"totals    frames {stats.get('frames_received', 0)}   "
        f"written {stats.get('points_written', 0)}   gaps {stats.get('gaps', 0)}   "
        f"reconnects {stats.get('reconnects', 0)}",
        "",
        f"{'account':>10}  {'state':<14}{'frames':>8}{'gaps':>6}{'reconn':>8}{'silent s':>10}",
    ]
    for row in sorted(status.get("accounts", []), key=_worst_first)[:WORST]:
        age = row.get("last_frame_age")
        lines.append(
            f"{row.get('account', '?'):>10}  {row.get('state', '?'):<14}"
            f"{row.get('frames', '-'):>8}{row.get('gaps', '-'):>6}{row.get('reconnects', '-'):>8}"
            f"{'-' if age is None else age:>10}"
        )
    return "\n".join(lines) + "\n"


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


async def _fetch(http: httpx.AsyncClient, url: str) -> str:
    try:
        response = await http.get(f"{url}/status")
        response.raise_for_status()
        return render(orjson.loads(response.content), url)
    except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
        return f"gate-collector top: cannot read {url}/status: {exc!r}\n(retrying; q quits)\n"


async def run(url: str, interval: float = 1.0) -> int:
    """Redraw until q, Ctrl-C or end of input."""
    url = url.rstrip("/")
    with _keys_without_enter():
        async with httpx.AsyncClient(timeout=interval * 3) as http, trio.open_nursery() as nursery:

            async def quit_on_q() -> None:
                await _wait_for_q()
                nursery.cancel_scope.cancel()

            nursery.start_soon(quit_on_q)
            while True:
                screen = await _fetch(http, url)
                sys.stdout.write(CLEAR_HOME + screen)
                sys.stdout.flush()
                await trio.sleep(interval)
    return 0
