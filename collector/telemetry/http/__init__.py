"""The collector's own HTTP endpoint: ``/metrics``, ``/healthz``, ``/readyz``, ``/status``."""

from collector.telemetry.http.endpoints import Observed, serve_endpoint
from collector.telemetry.http.server import bound_port, open_listeners

__all__ = ["Observed", "bound_port", "open_listeners", "serve_endpoint"]
