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
"""

from __future__ import annotations

import difflib
import os
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from collector.gate.signing import ApiCredentials
from collector.http.server import parse_listen

ENV_PREFIX: Final = "GATE_COLLECTOR__"

# (section, key) <- environment variable / credential file, for secrets.
SECRET_ENV: Final[Mapping[str, tuple[str, str]]] = {
    "GATE_API_KEY": ("gate", "api_key"),
    "GATE_API_SECRET": ("gate", "api_secret"),
    "GATE_COLLECTOR_MASTER_KEY": ("state", "master_key"),
    "INFLUX_TOKEN": ("influx", "token"),
    "INFLUX_PASSWORD": ("influx", "password"),
}
CREDENTIAL_FILES: Final[Mapping[str, tuple[str, str]]] = {
    "gate-api-key": ("gate", "api_key"),
    "gate-api-secret": ("gate", "api_secret"),
    "master-key": ("state", "master_key"),
    "influx-token": ("influx", "token"),
    "influx-password": ("influx", "password"),
}


class ConfigError(Exception):
    """The configuration cannot be used; the message says what to change."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class GateSettings(_Section):
    """``[gate]``: where Gate is and the broker's own API key."""

    rest_url: str = "https://api.gateio.ws/api/v4"
    # Gate's current docs; the Broker-era seed says ws.gate.io (both serve the same API).
    ws_url: str = "wss://ws.gate.com/v4/ws/unified"
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    currencies: list[str] = Field(default_factory=lambda: ["!all"], min_length=1)
    ca_file: str | None = None
    max_connections_per_ip: int = Field(default=300, gt=0)
    # New currencies per account beyond this are dropped and counted (one account
    # must not poison InfluxDB's max-values-per-tag for all, nor grow memory).
    max_currencies_per_account: int = Field(default=1000, gt=0)
    # Seconds between unified.ping frames; Gate documents pings every 5-25 s.
    ping_interval: float = Field(default=15.0, ge=5, le=25)
    source_addresses: list[str] = Field(default_factory=list)

    @field_validator("rest_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (or http:// for a local simulator)")
        return value.rstrip("/")

    @field_validator("ws_url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://")):
            raise ValueError("must start with wss:// (or ws:// for a local simulator)")
        return value


class AccountsSettings(_Section):
    """``[accounts]``: which sub-accounts this instance serves and how often to look."""

    shard: str = "0/1"
    shards: int | None = Field(default=None, gt=0)
    refresh_interval: float = Field(default=300.0, gt=0)
    key_name: str = Field(default="gate-collector", min_length=1)
    # REST snapshots (GET /unified/accounts): Gate pushes only on change, so every
    # account is read in full this often (0: only on (re)subscribe and after gaps),
    # spread over the interval, at most snapshot_rate requests/s for the instance.
    snapshot_interval: float = Field(default=300.0, ge=0)
    snapshot_rate: float = Field(default=20.0, gt=0)
    # The Broker document's permission names; all read-only (see README, "Keys").
    key_permissions: list[str] = Field(
        default_factory=lambda: ["wallet", "spot", "futures"], min_length=1
    )
    # The collector's egress IPs: keys bound to them do not expire (else 90 days).
    key_ip_whitelist: list[str] = Field(default_factory=list)
    # The create-key body's `type`: 1 as in every example of the Broker document.
    key_type: int = Field(default=1, ge=1, le=3)
    # Gate: key changes "can take up to 5 minutes to take effect".
    key_activation_grace: float = Field(default=300.0, ge=0)
    # Keys without an IP binding expire after 90 days: replace them before that.
    key_rotate_after: float = Field(default=80 * 86400.0, gt=0, le=89 * 86400.0)

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str) -> str:
        parse_shard(value)
        return value

    @property
    def shard_index(self) -> int:
        """``i`` of ``"i/N"``."""
        return parse_shard(self.shard)[0]

    @property
    def shard_count(self) -> int:
        """``N`` of ``"i/N"``."""
        return parse_shard(self.shard)[1]


class StateSettings(_Section):
    """``[state]``: the key store and the spool live in ``dir``."""

    dir: str = "/var/lib/gate-collector"
    master_key: SecretStr | None = None

    @property
    def path(self) -> Path:
        """``dir`` as a :class:`Path`."""
        return Path(self.dir)


class InfluxSettings(_Section):
    """``[influx]``: where points are written (v1 or v2 write API)."""

    url: str = "http://127.0.0.1:8086"
    api: Literal["v1", "v2"] = "v1"
    database: str = "gate"
    retention_policy: str = ""
    username: str = ""
    password: SecretStr | None = None
    org: str = ""
    bucket: str = ""
    token: SecretStr | None = None
    batch_size: int = Field(default=5000, gt=0)
    flush_interval: float = Field(default=1.0, gt=0)
    flush_jitter: float = Field(default=0.1, ge=0)
    buffer_limit: int = Field(default=100_000, gt=0)
    spool_max_bytes: int = Field(default=1 << 30, gt=0)
    # While InfluxDB is not taking writes, buffered data is on disk after this long.
    spool_after: float = Field(default=5.0, gt=0)
    gzip: bool = True
    timeout: float = Field(default=10.0, gt=0)
    create_database: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class HttpSettings(_Section):
    """``[http]``: the endpoint (/metrics /healthz /readyz /status); off when listen is ""."""

    listen: str = ""
    stall_seconds: float = Field(default=300.0, gt=0)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value:
            parse_listen(value)
        return value


class LogSettings(_Section):
    """``[log]``: level and format when the command line does not give them (SIGHUP re-reads)."""

    level: Literal["debug", "info", "warning", "error"] | None = None
    format: Literal["json", "journal", "console"] | None = None


class Settings(_Section):
    """The whole configuration."""

    gate: GateSettings = Field(default_factory=GateSettings)
    accounts: AccountsSettings = Field(default_factory=AccountsSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    influx: InfluxSettings = Field(default_factory=InfluxSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    log: LogSettings = Field(default_factory=LogSettings)


def parse_shard(value: str) -> tuple[int, int]:
    """``"i/N"`` -> ``(i, N)``; ValueError with the allowed form otherwise."""
    index, sep, count = value.partition("/")
    if not sep or not index.isdigit() or not count.isdigit():
        raise ValueError(f'must look like "i/N" (e.g. "0/4"), got {value!r}')
    i, n = int(index), int(count)
    if n < 1 or i >= n:
        raise ValueError(f"needs 0 <= i < N and N >= 1, got {value!r}")
    return i, n


def load_settings(
    path: Path | None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read, merge and validate the configuration; raise :class:`ConfigError`."""
    env = os.environ if environ is None else environ
    raw = _read_toml(path) if path is not None else {}
    _merge_credentials(raw, env)
    _merge_environment(raw, env)
    _resolve_auto_shard(raw, env)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        source = str(path) if path is not None else "the configuration"
        problems = "\n".join(f"  - {_describe(err)}" for err in exc.errors())
        raise ConfigError(f"{source} is not valid:\n{problems}") from None


def shard_from_hostname(hostname: str, count: int) -> str:
    """``gate-collector-3`` and N -> ``"3/N"`` (a StatefulSet pod's ordinal is its shard)."""
    ordinal = hostname.split(".")[0].rpartition("-")[2]
    if not ordinal.isdigit() or int(ordinal) >= count:
        raise ConfigError(
            f'accounts.shard = "auto" takes the shard from the hostname\'s "-<ordinal>" '
            f"suffix below accounts.shards = {count}; got hostname {hostname!r}: "
            'set accounts.shard = "i/N" instead'
        )
    return f"{int(ordinal)}/{count}"


def _resolve_auto_shard(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    accounts = raw.get("accounts")
    if not isinstance(accounts, dict) or accounts.get("shard") != "auto":
        return
    count = accounts.get("shards")
    if not isinstance(count, int) or count < 1:
        raise ConfigError(
            f'accounts.shard = "auto" needs accounts.shards = N (the StatefulSet\'s replicas), '
            f"got {count!r}"
        )
    accounts["shard"] = shard_from_hostname(env.get("HOSTNAME") or socket.gethostname(), count)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; pass --config PATH") from None
    except IsADirectoryError:
        raise ConfigError(f"--config {path} is a directory; pass the TOML file in it") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def _set(raw: dict[str, Any], section: str, key: str, value: Any) -> None:
    table = raw.setdefault(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"[{section}] must be a table, got {type(table).__name__}")
    table[key] = value


def _merge_credentials(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    directory = env.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return
    for filename, (section, key) in CREDENTIAL_FILES.items():
        _set_credential(raw, Path(directory) / filename, section, key)


def _set_credential(raw: dict[str, Any], file: Path, section: str, key: str) -> None:
    try:
        if not file.is_file():
            return
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read credential file {file}: {exc.strerror}; the collector's user "
            "must be able to read $CREDENTIALS_DIRECTORY"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"credential file {file} is not UTF-8 text; write the bare value into it"
        ) from None
    _set(raw, section, key, text.strip())


def _merge_environment(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    for name, (section, key) in SECRET_ENV.items():
        if env.get(name):
            _set(raw, section, key, env[name])
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(
                f"environment variable {name} must look like {ENV_PREFIX}<SECTION>__<KEY>, "
                f"e.g. {ENV_PREFIX}INFLUX__URL"
            )
        _set(raw, parts[0], parts[1], _env_value(value))


def _env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _is_secret(loc: tuple[int | str, ...]) -> bool:
    secret_keys = {key for _, key in SECRET_ENV.values()}
    return any(part in secret_keys for part in loc)


def _describe(err: Mapping[str, Any]) -> str:
    loc: tuple[int | str, ...] = tuple(err["loc"])
    path = ".".join(str(part) for part in loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        return _describe_unknown(loc, path)
    message = str(err["msg"])
    if _is_secret(loc):
        return f"{path}: {message} (value hidden: it is a secret)"
    value = err.get("input")
    hint = ""
    if loc and str(loc[-1]) in _DURATIONS:
        hint = "; durations are seconds, as a number (e.g. 1.5)"
    return f"{path}: {message}; got {value!r}{hint}"


_DURATIONS: Final = frozenset(
    {
        "refresh_interval",
        "snapshot_interval",
        "flush_interval",
        "flush_jitter",
        "timeout",
        "key_activation_grace",
        "key_rotate_after",
    }
)


def _describe_unknown(loc: tuple[int | str, ...], path: str) -> str:
    model: type[BaseModel] = Settings
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    allowed = sorted(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    suggestion = f"; did you mean {close[0]!r}?" if close else ""
    return f"{path}: unknown key{suggestion} (allowed here: {', '.join(allowed)})"


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
