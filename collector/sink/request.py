"""The one place that knows how an InfluxDB request is addressed and authenticated.

Writes (v1 ``/write`` or v2 ``/api/v2/write``), InfluxQL queries (``/query``) and
the ``/ping`` check all take their URL, parameters and credentials from here, so
the credentials are applied the same way everywhere and never spelled twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from collector.config import InfluxSettings


@dataclass(frozen=True)
class InfluxRequest:
    """URL, query parameters, headers and auth of one kind of InfluxDB request."""

    url: str
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    auth: httpx.Auth | None = field(default=None, repr=False)

    async def send(
        self,
        http: httpx.AsyncClient,
        method: str = "POST",
        *,
        content: bytes | None = None,
        http_timeout: float | None = None,
    ) -> httpx.Response:
        """Send it with ``http``; httpx errors propagate."""
        return await http.request(
            method,
            self.url,
            params=self.params,
            headers=self.headers,
            content=content,
            auth=self.auth or httpx.USE_CLIENT_DEFAULT,
            timeout=httpx.USE_CLIENT_DEFAULT if http_timeout is None else http_timeout,
        )


def basic_auth(settings: InfluxSettings) -> httpx.Auth | None:
    """v1 user/password as HTTP Basic auth, when both are configured."""
    if settings.api == "v1" and settings.username and settings.password is not None:
        return httpx.BasicAuth(settings.username, settings.password.get_secret_value())
    return None


def _token_headers(settings: InfluxSettings) -> dict[str, str]:
    if settings.api == "v2" and settings.token is not None:
        return {"Authorization": f"Token {settings.token.get_secret_value()}"}
    return {}


def write_request(settings: InfluxSettings, *, gzip: bool | None = None) -> InfluxRequest:
    """A line-protocol write for the configured API (gzip body unless told otherwise)."""
    headers = {"Content-Type": "text/plain; charset=utf-8", **_token_headers(settings)}
    if settings.gzip if gzip is None else gzip:
        headers["Content-Encoding"] = "gzip"
    if settings.api == "v2":
        params = {"org": settings.org, "bucket": settings.bucket, "precision": "ms"}
        return InfluxRequest(f"{settings.url}/api/v2/write", params, headers)
    params = {"db": settings.database, "precision": "ms"}
    if settings.retention_policy:
        params["rp"] = settings.retention_policy
    return InfluxRequest(f"{settings.url}/write", params, headers, basic_auth(settings))


def query_request(
    settings: InfluxSettings, query: str, *, database: bool = True, epoch: str = "ms"
) -> InfluxRequest:
    """An InfluxQL ``/query`` (v1), in the configured database unless ``database=False``."""
    params = {"q": query, "epoch": epoch}
    if database:
        params["db"] = settings.database
    return InfluxRequest(
        f"{settings.url}/query", params, _token_headers(settings), basic_auth(settings)
    )
