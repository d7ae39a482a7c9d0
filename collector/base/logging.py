"""structlog set-up: JSON lines, journald's ``<N>`` lines, a console; secrets redacted.

Formats (``--log-format``): ``json`` (one JSON document a line: Docker, Kubernetes,
files), ``journal`` (the same with journald's ``<N>`` priority prefix) and
``console`` (people at a terminal). By default: console on a tty, journal when
the stream is journald's (``$JOURNAL_STREAM`` names its device and inode), else
json.

The chain is small processors; :func:`redact_secrets` runs last before the
renderer so nothing that reaches a sink can carry a secret, whatever a caller
passed in.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Final, Literal, TextIO

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
# The userinfo of a URL (``http://user:PASSWORD@host``), wherever a URL is in a string.
_USERINFO: Final = re.compile(r"(?<=://)[^/?#@\s\"']*@")
# syslog priorities for journald's "<N>" prefix.
_PRIORITY: Final = {"critical": 2, "error": 3, "warning": 4, "info": 6, "debug": 7}

LogFormat = Literal["json", "journal", "console"]


def redact_url(text: str) -> str:
    """``text`` with the userinfo of every URL in it masked (``http://***@host:8086``)."""
    return _USERINFO.sub(MASK + "@", text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        for pattern in _SECRET_PATTERNS:
            value = pattern.sub(MASK, value)
        return redact_url(value)
    if isinstance(value, MutableMapping):
        return {k: MASK if _is_secret_key(k) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and key.lower() in SECRET_KEYS


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Mask secret-named keys, anything shaped like a signature or Fernet token, and
    the userinfo of URLs."""
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


# The least severe level written. A processor reads it on every event, so a
# change (SIGHUP) reaches loggers already bound, e.g. each session's.
_threshold = [logging.INFO]
_METHOD_LEVELS: Final = {
    **{name.lower(): number for name, number in logging.getLevelNamesMapping().items()},
    "exception": logging.ERROR,
    "warn": logging.WARNING,
    "fatal": logging.CRITICAL,
}


def filter_level(_logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """Drop events below the current level (:func:`set_level`)."""
    if _METHOD_LEVELS.get(method, logging.INFO) < _threshold[0]:
        raise structlog.DropEvent
    return event_dict


def processors(fmt: LogFormat, colors: bool = False) -> list[Processor]:
    """The processor chain; the last one renders."""
    chain: list[Processor] = [
        filter_level,
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Tracebacks become plain text here (no locals: they leak secrets), so
        # the redaction below sees them too.
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    if fmt == "journal":
        chain.append(_JournaldPrefix(structlog.processors.JSONRenderer()))
    elif fmt == "json":
        chain.append(structlog.processors.JSONRenderer())
    else:
        chain.append(structlog.dev.ConsoleRenderer(colors=colors))
    return chain


def under_journald(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` is journald's (``$JOURNAL_STREAM`` is ``device:inode`` of it).

    Checking the inode, not only the variable, matters: a child process or a
    redirect inherits the variable while writing somewhere else.
    """
    env = os.environ if environ is None else environ
    device, sep, inode = env.get("JOURNAL_STREAM", "").partition(":")
    if not sep or not device.isdigit() or not inode.isdigit():
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # StringIO and the like have no fd
        return False
    return (stat.st_dev, stat.st_ino) == (int(device), int(inode))


def default_format(stream: TextIO, environ: Mapping[str, str] | None = None) -> LogFormat:
    """console on a tty, journal under journald, json otherwise."""
    if stream.isatty():
        return "console"
    return "journal" if under_journald(stream, environ) else "json"


# What configure() was last given, so set_level() can change only the level.
_current: dict[str, Any] = {}


def configure(
    level: str = "info", stream: TextIO | None = None, fmt: LogFormat | None = None
) -> None:
    """Configure structlog for the process (again, on a reload)."""
    out = stream or sys.stdout
    chosen = fmt or default_format(out)
    _current.update(stream=out, fmt=chosen)
    set_level(level)
    structlog.configure(
        processors=processors(chosen, colors=chosen == "console" and out.isatty()),
        # Everything reaches filter_level, which knows the level of the moment.
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def set_level(level: str) -> None:
    """Change the level for every logger, bound or not (SIGHUP)."""
    _threshold[0] = logging.getLevelNamesMapping()[level.upper()]
    _current["level"] = level


def current_level() -> str:
    """The level last configured."""
    return str(_current.get("level", "info"))


def get_logger(name: str) -> Any:
    """A structlog logger bound with the module name."""
    return structlog.get_logger(name)
