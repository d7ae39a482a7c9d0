"""Validating the merged sources into :class:`~collector.config.settings.Settings`.

Strict by design: an unknown key anywhere, a wrong type or an out-of-range value
is a :class:`~collector.config.errors.ConfigError` whose message names the full
key path, the value (never for secrets) and what is allowed.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from collector.base.logging import redact_url
from collector.config.errors import ConfigError
from collector.config.settings import Settings
from collector.config.sources import SECRET_ENV, read_sources


def load_settings(
    path: Path | None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read, merge and validate the configuration; raise :class:`ConfigError`."""
    raw = read_sources(path, environ)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        source = str(path) if path is not None else "the configuration"
        # One line, whatever the number of problems: it is what systemd and a
        # terminal show of a failed start.
        problems = " | ".join(_describe(err) for err in exc.errors())
        raise ConfigError(f"{source}: {problems}") from None


def _is_secret(loc: tuple[int | str, ...]) -> bool:
    secret_keys = {key for _, key in SECRET_ENV.values()}
    return any(part in secret_keys for part in loc)


def _describe(err: Mapping[str, Any]) -> str:
    loc: tuple[int | str, ...] = tuple(err["loc"])
    path = ".".join(str(part) for part in loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        return _describe_unknown(loc, path)
    message = str(err["msg"]).removeprefix("Value error, ")
    if _is_secret(loc):
        return f"{path}: {message} (value hidden: it is a secret)"
    value = err.get("input")
    hint = ""
    if loc and str(loc[-1]) in _DURATIONS and err["type"] != "value_error":
        hint = "; durations are seconds, as a number (e.g. 1.5)"
    # A URL's userinfo (user:PASSWORD@) is a secret too.
    return f"{path}: {message}; got {redact_url(repr(value))}{hint}"


_DURATIONS: Final = frozenset(
    {
        "refresh_interval",
        "snapshot_interval",
        "flush_interval",
        "flush_jitter",
        "timeout",
        "key_activation_grace",
        "key_rotate_after",
        "spool_after",
        "stall_seconds",
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
