"""The supervisor's two systemd loops: more start time until ready, then the heartbeat.

Both only speak through a :class:`~collector.base.systemd.Notifier` (a no-op outside
systemd) and read what to say from callables, so they hold no state of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import trio

from collector.base.systemd import Notifier

STATUS_INTERVAL: Final = 5.0
# Start time asked of systemd at a time (EXTEND_TIMEOUT_USEC), renewed until ready.
START_EXTENSION: Final = 90.0


async def extend_start_timeout(
    notifier: Notifier, ready: trio.Event, status: Callable[[], str]
) -> None:
    """Until ``ready``: ask systemd for more start time (provisioning 10,000 keys takes
    minutes at Gate's rate limits, more than any fixed TimeoutStartSec)."""
    while not ready.is_set():
        notifier.extend_timeout(START_EXTENSION, status())
        with trio.move_on_after(START_EXTENSION / 3):
            await ready.wait()


async def heartbeat(notifier: Notifier, status: Callable[[], str]) -> None:
    """``WATCHDOG=1`` with the status line, every 5 s or half the watchdog interval.

    Outside systemd there is no one to tell: the loop (and the status line, a scan
    of every account) is not run at all.
    """
    if not notifier.enabled:
        return
    interval = min(STATUS_INTERVAL, notifier.watchdog_interval or STATUS_INTERVAL)
    while True:
        notifier.notify("WATCHDOG=1", f"STATUS={status()}")
        await trio.sleep(interval)
