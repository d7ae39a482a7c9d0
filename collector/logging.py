"""structlog set-up: JSON lines for journald, a console on a tty, secrets redacted.

The chain is small processors; :func:`redact_secrets` runs last before the
renderer so nothing that reaches a sink can carry a secret, whatever a caller
passed in.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Final, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

MASK: Final = "***"

# Keys whose values are secrets wherever they appear in an event.
SECRET_KEYS: Final = frozenset(
    {
        "secret",
        "api_secret",
        "sign",
        "signature",
        "token",
        "password",
        "master_key",
        "authorization",
    }
)
# A hex SHA-512 digest (a signature) or a Fernet token, inside any string.
_SECRET_PATTERNS: Final = (
    re.compile(r"\b[0-9a-fA-F]{128}\b"),
    re.compile(r"gAAAAA[0-9A-Za-z_\-=]{40,}"),
)
# syslog priorities for journald's "<N>" prefix.
_PRIORITY: Final = {"critical": 2, "error": 3, "warning": 4, "info": 6, "debug": 7}


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        for pattern in _SECRET_PATTERNS:
            value = pattern.sub(MASK, value)
        return value
    if isinstance(value, MutableMapping):
        return {k: MASK if _is_secret_key(k) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and key.lower() in SECRET_KEYS


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Mask secret-named keys and anything shaped like a signature or Fernet token."""
    for key, value in list(event_dict.items()):
        event_dict[key] = MASK if _is_secret_key(key) else _scrub(value)
    return event_dict


class _JournaldPrefix:
    """Prefix each JSON line with ``<N>`` so journald keeps the priority."""

    def __init__(self, renderer: structlog.processors.JSONRenderer) -> None:
        self._renderer = renderer

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
        priority = _PRIORITY.get(str(event_dict.get("level", "info")), 6)
        rendered = self._renderer(logger, method, event_dict)
        text = rendered.decode() if isinstance(rendered, bytes) else rendered
        return f"<{priority}>{text}"


def processors(json: bool, colors: bool = False) -> list[Processor]:
    """The processor chain; the last one renders."""
    chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Tracebacks become plain text here (no locals: they leak secrets), so
        # the redaction below sees them too.
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    if json:
        chain.append(_JournaldPrefix(structlog.processors.JSONRenderer()))
    else:
        chain.append(structlog.dev.ConsoleRenderer(colors=colors))
    return chain


def configure(level: str = "info", stream: TextIO | None = None, json: bool | None = None) -> None:
    """Configure structlog once for the process."""
    out = stream or sys.stdout
    use_json = (not out.isatty()) if json is None else json
    structlog.configure(
        processors=processors(use_json, colors=out.isatty()),
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    """A structlog logger bound with the module name."""
    return structlog.get_logger(name)
