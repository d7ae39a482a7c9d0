"""Settings: a TOML file, then credential files, then environment variables.

Strict by design: an unknown key anywhere, a wrong type or an out-of-range value
is a :class:`ConfigError` whose message names the full key path, the value (never
for secrets) and what is allowed. Secrets are :class:`pydantic.SecretStr`, so they
never show in ``repr``, logs or error messages.

Sources, later ones win:

1. the TOML file (``--config``);
2. files in ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``):
   ``gate-api-key``, ``gate-api-secret``, ``master-key``, ``influx-token``,
   ``influx-password``;
3. environment: ``GATE_API_KEY``, ``GATE_API_SECRET``, ``GATE_COLLECTOR_MASTER_KEY``,
   ``INFLUX_TOKEN``, and any key as ``GATE_COLLECTOR__<SECTION>__<KEY>`` (the value
   is read as a TOML value when it parses as one, e.g. ``5000`` or ``["BTC"]``,
   else as a plain string).

Rooms: the section classes are in :mod:`collector.config.settings`; reading the
sources in :mod:`collector.config.sources`; validation and its messages in
:mod:`collector.config.load`; the broker key and HTTP client in
:mod:`collector.config.clients`. Import from here.
"""

from __future__ import annotations

from collector.config.clients import broker_credentials, http_client
from collector.config.errors import ConfigError
from collector.config.load import load_settings
from collector.config.settings import (
    AccountsSettings,
    GateSettings,
    HttpSettings,
    InfluxSettings,
    LogSettings,
    Settings,
    StateSettings,
    parse_shard,
)
from collector.config.sources import (
    CREDENTIAL_FILES,
    ENV_PREFIX,
    SECRET_ENV,
    shard_from_hostname,
)

__all__ = [
    "CREDENTIAL_FILES",
    "ENV_PREFIX",
    "SECRET_ENV",
    "AccountsSettings",
    "ConfigError",
    "GateSettings",
    "HttpSettings",
    "InfluxSettings",
    "LogSettings",
    "Settings",
    "StateSettings",
    "broker_credentials",
    "http_client",
    "load_settings",
    "parse_shard",
    "shard_from_hostname",
]
