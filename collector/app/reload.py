"""SIGHUP: read the configuration again and apply what can change while running.

What changes live: ``log.level``, ``gate.currencies`` (each session subscribes
again on its connection), ``gate.ws_url`` (each session closes politely and
connects to the new URL),
``accounts.refresh_interval``, and every ``[influx]`` key but ``spool_max_bytes``:
the target, credentials, ``batch_size``, ``buffer_limit``, ``flush_interval``,
``flush_jitter``, ``spool_after``, ``timeout``, ``gzip``, ``create_database`` (the
sink first writes what it holds to the old target, then switches). Everything else
(the broker key, ``gate.rest_url``, the shard, ``state.*``, ...) needs a restart:
it is named in one log line and the running value is kept. A file that does not
load is logged and the running configuration stays.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import trio
from pydantic import BaseModel

from collector.base import logging
from collector.base.logging import get_logger
from collector.config import ConfigError, Settings, load_settings

log = get_logger(__name__)

# (section, key) applied without a restart; a section in LIVE_SECTIONS is live whole.
LIVE_KEYS: Final = frozenset(
    {
        ("gate", "currencies"),
        ("gate", "ws_url"),
        ("accounts", "refresh_interval"),
        ("log", "level"),
    }
)
LIVE_SECTIONS: Final = frozenset({"influx"})
NOT_LIVE_INFLUX: Final = frozenset({"spool_max_bytes"})  # the spool is sized at start


@dataclass(frozen=True)
class ReloadPlan:
    """The settings to run with now, what changed live and what waits for a restart."""

    settings: Settings
    live: tuple[str, ...]
    needs_restart: tuple[str, ...]

    def changed(self, section: str) -> bool:
        """True when a live key of ``section`` changed."""
        return any(name.startswith(f"{section}.") for name in self.live)


def _is_live(section: str, key: str) -> bool:
    if section == "influx":
        return key not in NOT_LIVE_INFLUX
    return section in LIVE_SECTIONS or (section, key) in LIVE_KEYS


def plan(current: Settings, new: Settings) -> ReloadPlan:
    """Compare two configurations (pure): take the live changes, name the others."""
    live: list[str] = []
    later: list[str] = []
    sections: dict[str, BaseModel] = {}
    for section in Settings.model_fields:
        old_part: BaseModel = getattr(current, section)
        new_part: BaseModel = getattr(new, section)
        update: dict[str, Any] = {}
        for key in type(old_part).model_fields:
            if getattr(old_part, key) == getattr(new_part, key):
                continue
            if _is_live(section, key):
                update[key] = getattr(new_part, key)
                live.append(f"{section}.{key}")
            else:
                later.append(f"{section}.{key}")
        sections[section] = old_part.model_copy(update=update) if update else old_part
    return ReloadPlan(Settings(**sections), tuple(live), tuple(later))  # type: ignore[arg-type]


@dataclass
class Reloader:
    """Applies a :class:`ReloadPlan` to a running daemon through its hooks."""

    config_path: Path
    current: Settings
    apply_sessions: Callable[[Settings], None]
    apply_sink: Callable[[Settings], Awaitable[None]]
    count: int = 0

    async def watch(self) -> None:
        """Reload on every SIGHUP until cancelled."""
        with trio.open_signal_receiver(signal.SIGHUP) as signals:
            async for _ in signals:
                await self.reload()

    async def reload(self) -> ReloadPlan | None:
        """Read the file again and apply it; None when it does not load."""
        try:
            new = load_settings(self.config_path)
        except ConfigError as exc:
            log.error("reload_failed", error=str(exc), hint="the running configuration is kept")
            return None
        change = plan(self.current, new)
        if change.needs_restart:
            log.warning(
                "reload_needs_restart",
                keys=list(change.needs_restart),
                hint="these keep their running values until the service restarts",
            )
        self.current = change.settings
        if change.changed("log"):
            apply_log(change.settings)
        if change.changed("gate") or change.changed("accounts"):
            self.apply_sessions(change.settings)
        if change.changed("influx"):
            await self.apply_sink(change.settings)
        self.count += 1
        log.info("reloaded", changed=list(change.live), log_level=logging.current_level())
        return change


def apply_log(settings: Settings) -> None:
    """Set the log level from ``[log]`` (unset: info)."""
    logging.set_level(settings.log.level or "info")
