"""What the settings make: the broker's credentials and the HTTP client."""

from __future__ import annotations

import httpx

from collector.config.errors import ConfigError
from collector.config.settings import Settings
from collector.gate.signing import ApiCredentials


def broker_credentials(settings: Settings) -> ApiCredentials:
    """The broker key from the settings, or a ConfigError saying where to put it."""
    key, secret = settings.gate.api_key, settings.gate.api_secret
    if key is None or secret is None:
        missing = "gate.api_key" if key is None else "gate.api_secret"
        raise ConfigError(
            f"{missing} is missing: the broker's API key and secret come from [gate] "
            "api_key/api_secret, env GATE_API_KEY/GATE_API_SECRET, or the credential "
            "files gate-api-key/gate-api-secret in $CREDENTIALS_DIRECTORY"
        )
    return ApiCredentials(key.get_secret_value(), secret.get_secret_value())


def http_client(verify: str | bool = True, timeout: float = 10.0) -> httpx.AsyncClient:
    """The one kind of HTTP client the collector uses (Gate and InfluxDB alike)."""
    try:
        return httpx.AsyncClient(verify=verify, timeout=timeout)
    except OSError as exc:  # verify is gate.ca_file: missing, unreadable, not PEM
        raise ConfigError(
            f"gate.ca_file {verify}: {exc.strerror or exc}; point it at a readable PEM "
            "CA bundle, or remove it to use the system's CAs"
        ) from None
