"""The collector's own HTTP endpoint: ``/metrics``, ``/healthz``, ``/readyz``, ``/status``."""

from collector.http.endpoints import Observed, serve_endpoint

__all__ = ["Observed", "serve_endpoint"]
