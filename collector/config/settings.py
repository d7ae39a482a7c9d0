"""The settings: one frozen, strict model per TOML section, and the whole.

Each ``[section]`` of the file is one class here; what may be set, its type, its
default and its allowed range are all in the field declarations. Reading the
sources and explaining what is wrong is :mod:`collector.config.load`.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator

from collector.base.logging import redact_url


def parse_listen(value: str) -> tuple[str, int]:
    """``"host:port"`` -> ``(host, port)``; ValueError naming the value otherwise."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f'must look like "127.0.0.1:9108" (host:port), got {value!r}')
    return host.strip("[]"), int(port)


DAY: Final = 86400.0
# Every duration is seconds in this range: below it a loop would spin, above it a
# value is a typo (1e308 never flushes, inf never times out).
MIN_SECONDS: Final = 0.01
MAX_SECONDS: Final = 30 * DAY
# Sizes a machine can hold: points in memory (~200 bytes each) and bytes on disk.
MAX_BATCH: Final = 1_000_000  # the spool's MAX_FILE_POINTS too
MAX_BUFFER: Final = 10_000_000
MAX_SPOOL_BYTES: Final = 1 << 44  # 16 TiB
MAX_COUNT: Final = 1_000_000  # connections per IP, currencies per account


def _span(seconds: float) -> str:
    return f"{seconds / DAY:g} days" if seconds >= DAY else f"{seconds:g} s"


def _seconds(low: float, high: float, *, zero: bool = False) -> AfterValidator:
    """A duration in ``[low, high]`` (or exactly 0 when ``zero``), finite, named in the error."""

    def check(value: float) -> float:
        if math.isfinite(value) and (low <= value <= high or (zero and value == 0)):
            return value
        off = " (or 0)" if zero else ""
        raise ValueError(f"must be seconds from {_span(low)} to {_span(high)}{off}")

    return AfterValidator(check)


Seconds = Annotated[float, _seconds(MIN_SECONDS, MAX_SECONDS)]
SecondsOrZero = Annotated[float, _seconds(MIN_SECONDS, MAX_SECONDS, zero=True)]


def _with_host(value: str, schemes: tuple[str, ...], hint: str) -> str:
    """``value`` when it is a URL of one of ``schemes`` with a host; ValueError otherwise."""
    if not value.startswith(schemes):
        raise ValueError(hint)
    try:
        host = urlsplit(value).hostname
    except ValueError as exc:  # a bad port or bracket
        raise ValueError(f"is not a URL ({exc})") from None
    if not host:
        raise ValueError(f"needs a host after {value.split('//')[0]}//")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # repr() and str() mask a URL's user:password@ like the logs do.
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if isinstance(value, str) else value


class GateSettings(_Section):
    """``[gate]``: where Gate is and the broker's own API key."""

    rest_url: str = "https://api.gateio.ws/api/v4"
    # Gate's current docs; the Broker-era seed says ws.gate.io (both serve the same API).
    ws_url: str = "wss://ws.gate.com/v4/ws/unified"
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    currencies: list[str] = Field(default_factory=lambda: ["!all"], min_length=1)
    ca_file: str | None = None
    max_connections_per_ip: int = Field(default=300, gt=0, le=MAX_COUNT)
    # New currencies per account beyond this are dropped and counted (one account
    # must not poison InfluxDB's max-values-per-tag for all, nor grow memory).
    max_currencies_per_account: int = Field(default=1000, gt=0, le=MAX_COUNT)
    # Seconds between unified.ping frames; Gate documents pings every 5-25 s.
    ping_interval: float = Field(default=15.0, ge=5, le=25)
    source_addresses: list[str] = Field(default_factory=list)
    # The unit of the WebSocket's margin rates (r, R, imr, mmr): Gate's newer document
    # says percent, the seed "as the http interface" (a ratio). "auto" decides from a
    # push and a REST snapshot of the same account and writes no pushed rate until then.
    ws_rate_unit: Literal["auto", "ratio", "percent"] = "auto"

    @field_validator("rest_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        hint = "must start with https:// (or http:// for a local simulator)"
        return _with_host(value, ("http://", "https://"), hint).rstrip("/")

    @field_validator("currencies")
    @classmethod
    def _currencies(cls, value: list[str]) -> list[str]:
        # Gate takes a list of currencies or ["!all"], never both in one payload.
        if "!all" in value and len(value) > 1:
            raise ValueError(
                'mixes "!all" with currency names, which Gate refuses: '
                'use ["!all"] alone, or list only the currencies'
            )
        return value

    @field_validator("ws_url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        hint = "must start with wss:// (or ws:// for a local simulator)"
        return _with_host(value, ("ws://", "wss://"), hint)

    @field_validator("source_addresses")
    @classmethod
    def _ips(cls, value: list[str]) -> list[str]:
        for address in value:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(
                    f"{address!r} is not an IP address (one of this host's, e.g. 10.0.0.5)"
                ) from None
        return value


class AccountsSettings(_Section):
    """``[accounts]``: which sub-accounts this instance serves and how often to look."""

    shard: str = "0/1"
    shards: int | None = Field(default=None, gt=0)
    refresh_interval: Seconds = 300.0
    key_name: str = Field(default="gate-collector", min_length=1)
    # REST snapshots (GET /unified/accounts): Gate pushes only on change, so every
    # account is read in full this often (0: only on (re)subscribe and after gaps),
    # spread over the interval, at most snapshot_rate requests/s for the instance.
    snapshot_interval: SecondsOrZero = 300.0
    snapshot_rate: float = Field(default=20.0, gt=0, le=10_000)
    # All read-only (see README, "Keys"): Gate's unified data needs "unified"; a name
    # the create-key call refuses is left out (logged once).
    key_permissions: list[str] = Field(
        default_factory=lambda: ["wallet", "spot", "futures", "unified"], min_length=1
    )
    # The collector's egress IPs: keys bound to them do not expire (else 90 days).
    key_ip_whitelist: list[str] = Field(default_factory=list)
    # The create-key body's `type`: 1 as in every example of the Broker document.
    key_type: int = Field(default=1, ge=1, le=3)
    # Gate: key changes "can take up to 5 minutes to take effect".
    key_activation_grace: SecondsOrZero = 300.0
    # Keys without an IP binding expire after 90 days: replace them before that.
    key_rotate_after: Annotated[float, _seconds(MIN_SECONDS, 89 * DAY)] = 80 * DAY

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

    @field_validator("dir")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not Path(value).is_absolute():
            raise ValueError("must be an absolute path (e.g. /var/lib/gate-collector)")
        return value

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
    batch_size: int = Field(default=5000, gt=0, le=MAX_BATCH)
    flush_interval: Seconds = 1.0
    flush_jitter: SecondsOrZero = 0.1
    buffer_limit: int = Field(default=100_000, gt=0, le=MAX_BUFFER)
    spool_max_bytes: int = Field(default=1 << 30, gt=0, le=MAX_SPOOL_BYTES)
    # While InfluxDB is not taking writes, buffered data is on disk after this long.
    spool_after: Seconds = 5.0
    gzip: bool = True
    timeout: Seconds = 10.0
    create_database: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        hint = "must start with http:// or https://"
        return _with_host(value, ("http://", "https://"), hint).rstrip("/")


class HttpSettings(_Section):
    """``[http]``: the endpoint (/metrics /healthz /readyz /status); off when listen is ""."""

    listen: str = ""
    stall_seconds: Seconds = 300.0

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
