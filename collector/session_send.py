"""What a session sends: subscribes when due, pings, resubscribes, unsubscribes.

One sending task per connection (:meth:`Outbox.run`) sends what the subscription
machine says is due and the ping when its deadline called; it sleeps until the
machine's next deadline or a wake-up (an ack, a refusal, a ping due). A second,
idle task waits for a SIGHUP change of currencies (:meth:`Outbox.resubscribe`).
Every request is signed with a fresh time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from collector.config import GateSettings
from collector.gate import protocol
from collector.gate.signing import ApiCredentials
from collector.session_subs import SubscriptionView


class Outbox:
    """The sending side of one account's session (lives across its connections)."""

    def __init__(
        self,
        creds: ApiCredentials,
        gate: Callable[[], GateSettings],
        subs: SubscriptionView,
        log: Any,  # the session's bound logger
        on_closed: Callable[[str], None],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._creds = creds
        self._gate = gate
        self._subs = subs
        self._log = log
        self._on_closed = on_closed
        self._wall_clock = wall_clock
        self.ping_due = False
        self.currencies_changed = trio.Event()

    def request(self, channel: str, event: str) -> bytes:
        """A signed request for ``channel`` (``asset_detail`` with the configured currencies)."""
        payload = list(self._gate().currencies) if channel == protocol.ASSET_DETAIL else []
        now = int(self._wall_clock())
        return protocol.request(channel, event, payload, now, self._creds)

    async def send(self, ws: WebSocketConnection, message: bytes) -> bool:
        """Send; False (and the reason told) when the connection is closed."""
        try:
            await ws.send_message(message.decode())
        except ConnectionClosed as exc:
            self._on_closed(f"closed while sending ({exc.reason})")
            return False
        return True

    async def run(self, ws: WebSocketConnection) -> None:
        """Send what is due until the connection closes."""
        self.ping_due = False
        subs, machine = self._subs, self._subs.machine
        while True:
            subs.wake = trio.Event()  # before the work: a wake-up during a send is kept
            now = trio.current_time()
            subs.expire(now)
            for channel in machine.due(now):
                # Pending before the send: the ack may be read before this task resumes.
                machine.sent(channel, trio.current_time())
                if not await self.send(ws, self.request(channel, "subscribe")):
                    return
            if self.ping_due:
                self.ping_due = False
                if not await self.send(ws, protocol.ping(int(self._wall_clock()))):
                    return
            subs.show()
            deadline = machine.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else float("inf")):
                await subs.wake.wait()

    async def resubscribe(self, ws: WebSocketConnection) -> None:
        """On a change of currencies: unsubscribe the old ones, subscribe the new."""
        subscribed = list(self._gate().currencies)  # what the subscriber asks Gate for
        while True:
            self.currencies_changed = trio.Event()
            if list(self._gate().currencies) == subscribed:  # else: changed while subscribing
                await self.currencies_changed.wait()
            now = int(self._wall_clock())
            leave = protocol.request(
                protocol.ASSET_DETAIL, "unsubscribe", subscribed, now, self._creds
            )
            if not await self.send(ws, leave):
                return
            subscribed = list(self._gate().currencies)
            if not await self.send(ws, self.request(protocol.ASSET_DETAIL, "subscribe")):
                return
            self._log.info("resubscribed", channel=protocol.ASSET_DETAIL, currencies=subscribed)
