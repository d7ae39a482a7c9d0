"""Faults a test queued on an account (:class:`~collector.devtools.simulator.state.WsFault`),
played on the unified WebSocket at a pusher's next look: a gap in ``u``, a drop,
a TCP reset in the middle of a frame, silence, a malformed frame, an error frame,
and Gate's two upgrade notices."""

from __future__ import annotations

import contextlib
import socket
import struct

import trio

from collector.devtools.simulator.state import SimSubAccount, WsFault
from collector.devtools.simulator.ws_link import Link
from collector.devtools.simulator.ws_values import FIRST_U

_SYSTEM_UPGRADE = {
    "type": "upgrade",
    "msg": "The connection will soon be closed for a service upgrade. Please reconnect.",
}


async def play_fault(link: Link, account: SimSubAccount, channel: str) -> bool:
    """Play the account's next fault; True when the connection is gone."""
    fault: WsFault = account.ws_faults[0]
    if fault.kind == "gap" and fault.channel != channel:
        return False
    account.ws_faults.popleft()
    link.state.ws_events[f"fault_{fault.kind}"] += 1
    if fault.kind == "gap":
        _skip(link, account, channel, fault.count)
    elif fault.kind == "drop":
        await link.ws.aclose()
        return True
    elif fault.kind == "reset":
        await _reset_mid_frame(link)
        return True
    elif fault.kind == "silence":
        link.silent_until = trio.current_time() + fault.seconds
    elif fault.kind == "malformed":
        await link.ws.send_message('{"channel": "unified.asset_detail", "event": "upd')
    elif fault.kind == "error":
        await link.error(channel, "update", 3, "service error: injected")
    elif fault.kind == "upgrade":
        await link.send({**link.stamp(), "channel": "", "event": "upgrade", "result": None})
    elif fault.kind == "system_upgrade":
        notice = {"channel": "unified.system", "event": "update", "result": _SYSTEM_UPGRADE}
        await link.send({**link.stamp(), **notice})
    return False


async def _reset_mid_frame(link: Link) -> None:
    """Half a text frame (its header promises 200 bytes), then a TCP reset (RST)."""
    stream = link.ws._stream  # the byte stream under the WebSocket
    async with link.ws._stream_lock:  # nothing else of the connection's is sent meanwhile
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(b"\x81\x7e\x00\xc8" + b'{"channel": "unified.asset_detail"')
        sock = getattr(stream, "socket", None)
        # linger 0: close() sends RST, not FIN (unless the client closed it first: EBADF)
        with contextlib.suppress(OSError):
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()


def _skip(link: Link, account: SimSubAccount, channel: str, count: int) -> None:
    """A gap: the channel's ``u`` jumps by ``count``."""
    key = (account.gate_id, channel)
    link.state.sequence[key] = link.state.sequence.get(key, FIRST_U) + count
    link.state.skipped[key] += count
