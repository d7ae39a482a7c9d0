"""A Gate look-alike (Broker REST API, later the unified WebSocket) for tests,
the demo and benchmarks. Strict: it verifies every signature and time window."""

from __future__ import annotations

import secrets
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import trio

from collector.devtools.simulator.httpserver import serve_http
from collector.devtools.simulator.rest import RestApi
from collector.devtools.simulator.state import BrokerState
from collector.devtools.simulator.ws import serve_unified
from collector.gate.signing import ApiCredentials

__all__ = ["BrokerState", "Simulator", "new_broker_credentials"]


def new_broker_credentials() -> ApiCredentials:
    """A fresh random broker key pair for a simulator."""
    return ApiCredentials(key=secrets.token_hex(16), secret=secrets.token_hex(32))


@dataclass
class Simulator:
    """Runs the simulator's servers in a nursery and says where they listen."""

    state: BrokerState
    host: str = "127.0.0.1"
    rest_port: int = 0
    ws_port: int = 0
    ssl_context: ssl.SSLContext | None = None

    @classmethod
    def create(
        cls,
        accounts: int = 0,
        disabled_every: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> Simulator:
        """A simulator with fresh broker credentials and ``accounts`` sub-accounts."""
        state = BrokerState(broker=new_broker_credentials(), clock=clock)
        state.seed(accounts, disabled_every)
        return cls(state)

    @property
    def rest_url(self) -> str:
        """``http://host:port/api/v4``: what goes into ``gate.rest_url``."""
        return f"http://{self.host}:{self.rest_port}/api/v4"

    @property
    def ws_url(self) -> str:
        """``ws://host:port/v4/ws/unified`` (``wss://`` with TLS): ``gate.ws_url``."""
        scheme = "wss" if self.ssl_context else "ws"
        return f"{scheme}://{self.host}:{self.ws_port}/v4/ws/unified"

    async def start(self, nursery: trio.Nursery) -> None:
        """Start listening (ports chosen by the OS unless set)."""
        api = RestApi(self.state)
        self.rest_port = await nursery.start(
            partial(
                serve_http, api.handler(), host=self.host, port=self.rest_port, date=self.state.now
            )
        )
        self.ws_port = await nursery.start(
            partial(
                serve_unified,
                self.state,
                host=self.host,
                port=self.ws_port,
                ssl_context=self.ssl_context,
            )
        )
