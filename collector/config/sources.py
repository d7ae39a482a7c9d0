"""The raw configuration: a TOML file, then credential files, then environment variables.

Each source is merged into one plain ``dict`` (section -> key -> value), later
ones winning; :mod:`collector.config.load` validates the result. Problems a
source itself has (a missing file, bad TOML, an unreadable credential) are a
:class:`~collector.config.errors.ConfigError` here.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from collector.config.errors import ConfigError

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


def read_sources(path: Path | None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The TOML file (if any), credential files and environment, merged; auto shard resolved."""
    env = os.environ if environ is None else environ
    raw = _read_toml(path) if path is not None else {}
    _merge_credentials(raw, env)
    _merge_environment(raw, env)
    _resolve_auto_shard(raw, env)
    return raw


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
        _must_be_a_file(path, "--config")
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; pass --config PATH") from None
    except IsADirectoryError:
        raise ConfigError(f"--config {path} is a directory; pass the TOML file in it") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "save it as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def _must_be_a_file(path: Path, what: str) -> None:
    """ConfigError unless ``path`` is a regular file (a FIFO would hang the start);
    OSError (missing, a directory, no access) is the caller's to explain."""
    mode = path.stat().st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{what} {path} is not a regular file (a FIFO, a device?); pass a file")


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
        if not file.exists():
            return
        _must_be_a_file(file, "credential file")
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
    if not text.strip():
        raise ConfigError(f"credential file {file} is empty; write the bare value into it")
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
