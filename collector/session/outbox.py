"""What a session sends: subscribes when due, pings, resubscribes, unsubscribes.

One sending task per connection (:meth:`Outbox.run`) sends what the subscription
machine says is due, the ping when its deadline called, and after a SIGHUP change
of currencies the unsubscribe and subscribe (:meth:`Outbox.change_currencies`);
it sleeps until the machine's next deadline or a wake-up (an ack, a refusal, a
ping due, new currencies). No second task per connection waits for a SIGHUP.
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
from collector.session.subscriptions import SubscriptionView


class Outbox:
    """The sending side of one account's session (lives across its connections)."""

    __slots__ = (
        "_creds",
        "_currencies_changed",
        "_gate",
        "_log",
        "_on_closed",
        "_subs",
        "_subscribed",
        "_wall_clock",
        "ping_due",
    )

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
        self._currencies_changed = False
        self._subscribed: list[str] = []  # the currencies asset_detail asked Gate for

    def change_currencies(self) -> None:
        """SIGHUP: the settings' currencies changed; the sending task resubscribes."""
        self._currencies_changed = True
        self._subs.wake.set()

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
        self._currencies_changed = False  # a new connection subscribes with them anyway
        self._subscribed = list(self._gate().currencies)
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
            if self._currencies_changed and not await self._resubscribe(ws):
                return
            subs.show()
            deadline = machine.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else float("inf")):
                await subs.wake.wait()

    async def _resubscribe(self, ws: WebSocketConnection) -> bool:
        """On a change of currencies: unsubscribe the old ones, subscribe the new.

        Repeated while they changed again during the sends; False once closed.
        """
        while self._currencies_changed:
            self._currencies_changed = False
            subscribed = self._subscribed
            now = int(self._wall_clock())
            leave = protocol.request(
                protocol.ASSET_DETAIL, "unsubscribe", subscribed, now, self._creds
            )
            if not await self.send(ws, leave):
                return False
            self._subscribed = list(self._gate().currencies)
            if not await self.send(ws, self.request(protocol.ASSET_DETAIL, "subscribe")):
                return False
            self._log.info(
                "resubscribed", channel=protocol.ASSET_DETAIL, currencies=self._subscribed
            )
            if list(self._gate().currencies) != self._subscribed:  # changed while sending
                self._currencies_changed = True
        return True
