"""The pushes of one subscribed (account, channel) on the unified WebSocket.

Like Gate, a subscribe delivers nothing by itself: the pusher looks every
``state.push_interval`` and sends an update only when the account changed (every
``change_interval``, or when a test calls ``account.change``). It closes the
connection (1008) once the key is revoked or refused or the account disabled,
plays queued faults, and in ``state.burst`` mode sends pre-encoded updates back
to back instead (benchmarks)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
import trio
from trio_websocket import ConnectionClosed

from collector.devtools.simulator.state import SimSubAccount
from collector.devtools.simulator.ws_faults import play_fault
from collector.devtools.simulator.ws_link import Link
from collector.devtools.simulator.ws_values import FIRST_U, burst_detail, ws_assets, ws_detail
from collector.gate.protocol import ASSET_DETAIL, ASSETS


@dataclass
class Pusher:
    """Pushes one subscribed (account, channel) on one connection; started per subscribe."""

    link: Link
    account: SimSubAccount
    channel: str
    payload: list[str]
    key: str

    async def run(self, scope: trio.CancelScope) -> None:
        """Push until ``scope`` is cancelled or the connection is gone."""
        state, gate_id = self.link.state, self.account.gate_id
        state.active[gate_id] += 1
        state.keys_in_use[self.key] += 1
        try:
            with scope:
                await self._loop()
        finally:
            state.active[gate_id] -= 1
            state.keys_in_use[self.key] -= 1

    async def _loop(self) -> None:
        link, account = self.link, self.account
        if link.state.burst:
            if self.channel == ASSET_DETAIL:
                await self._burst()
            return
        last_ms = 0
        sent_version = account.version  # a subscribe delivers no state by itself
        while True:
            await trio.sleep(link.state.push_interval)
            if not self._allowed():
                await link.ws.aclose(code=1008, reason="key revoked or account disabled")
                return
            if account.ws_faults and await play_fault(link, account, self.channel):
                return
            if link.silent():
                continue  # silent: nothing is produced, so nothing is lost either
            if not link.state.paused:
                self._maybe_change()
            if account.version == sent_version:
                continue  # nothing changed: Gate pushes nothing
            sent_version = account.version
            last_ms = max(int(link.state.now() * 1000), last_ms + 1)
            if not await self.push(last_ms):
                return

    def _allowed(self) -> bool:
        """The key still exists and is not refused, and the account is enabled."""
        state = self.link.state
        known = state.keys.get(self.key)
        return (
            known is not None
            and self.account.status == "enabled"
            and state.key_refusal(known, self.link.peer()) is None
        )

    def _maybe_change(self) -> None:
        account = self.account
        interval = account.change_interval
        if interval is None:
            interval = self.link.state.change_interval
        if interval <= 0:
            return
        now = trio.current_time()
        if account.changed_at is None:
            account.changed_at = now - interval  # the first look sees a change
        if now >= account.changed_at + interval:
            account.change(now, self.link.state.now())

    async def push(self, time_ms: int) -> bool:
        """Send one update stamped ``time_ms``; it counts as pushed only once it went out
        (False: the connection is gone)."""
        state, account, channel = self.link.state, self.account, self.channel
        key = (account.gate_id, channel)
        identity = account.u_mode == "identity"
        u = account.gate_id if identity else state.sequence.get(key, FIRST_U - 1) + 1
        t = time_ms // 1000
        values = self._values()
        if channel == ASSETS:
            result: dict[str, Any] = {"u": u, "t": t, **values[""]}
        else:
            result = {"u": u, "t": t, "dts": values}
        frame: dict[str, Any] = {"time": t, "channel": channel, "event": "update"}
        if state.push_time_ms:
            frame["time_ms"] = time_ms
        if not await self.link.send({**frame, "result": result}):
            return False
        if not identity:
            state.sequence[key] = u
        state.pushed[key] += 1
        state.last_push_ms[key] = time_ms
        for currency, sent in values.items():
            state.last_pushed[(account.gate_id, channel, currency)] = sent
        if state.push_log is not None:
            state.push_log.append((account.gate_id, channel, time_ms, values))
        return True

    def _values(self) -> dict[str, dict[str, str]]:
        """The update's values by currency (``""`` for ``unified.assets``)."""
        account = self.account
        unit = self.link.state.ws_rate_unit
        if self.channel == ASSETS:
            return {"": ws_assets(account, unit)}
        wanted = account.currencies if self.payload == ["!all"] else self.payload
        return {
            c: ws_detail(account, i, unit) for i, c in enumerate(account.currencies) if c in wanted
        }

    async def _burst(self) -> None:
        """Send ``state.burst`` pre-encoded updates back to back (benchmarks)."""
        state, account = self.link.state, self.account
        dts = orjson.dumps(
            {c: burst_detail(0, i) for i, c in enumerate(account.currencies)}
        ).decode()
        template = (
            '{"time":%d,"time_ms":%d,"channel":"unified.asset_detail","event":"update",'
            '"result":{"u":%d,"t":%d,"dts":' + dts + "}}"
        )
        key = (account.gate_id, ASSET_DETAIL)
        first_u = state.sequence.get(key, FIRST_U - 1) + 1
        start_ms = int(state.now() * 1000)
        if state.burst_started is None:
            state.burst_started = trio.current_time()
            state.burst_started_monotonic = time.monotonic()
        send = self.link.ws.send_message
        for i in range(state.burst):
            ms = start_ms + i
            try:
                await send(template % (ms // 1000, ms, first_u + i, ms // 1000))
            except ConnectionClosed:
                return
            state.burst_sent += 1
        state.sequence[key] = first_u + state.burst - 1
        state.pushed[key] += state.burst
        state.burst_finished = trio.current_time()
