"""The simulator's per-connection sending side survives a client that is already gone."""

from __future__ import annotations

from typing import Any, cast

from trio_websocket import WebSocketConnection

from collector.devtools.simulator.state import BrokerState
from collector.devtools.simulator.ws_link import Link


class _Endpoint:
    def __init__(self, address: str) -> None:
        self.address = address


class _Socket:
    """Stands in for a WebSocketConnection: only ``remote`` is read."""

    def __init__(self, remote: Any) -> None:
        self._remote = remote

    @property
    def remote(self) -> Any:
        if isinstance(self._remote, OSError):
            raise self._remote
        return self._remote


def _link(remote: Any) -> Link:
    return Link(cast(BrokerState, object()), cast(WebSocketConnection, _Socket(remote)))


def test_the_peer_is_read_when_the_connection_opens() -> None:
    assert _link(_Endpoint("127.0.0.7")).peer() == "127.0.0.7"


def test_a_client_gone_before_its_address_is_read_has_no_peer() -> None:
    # getpeername() on a socket the client closed raises ENOTCONN (seen in the benchmarks
    # when a collector stopped mid-subscribe): the simulator must not crash on it.
    assert _link(OSError(107, "Transport endpoint is not connected")).peer() is None


def test_a_unix_socket_peer_has_no_address() -> None:
    assert _link("unix-socket").peer() is None
