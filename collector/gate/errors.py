"""Gate's error labels as typed exceptions.

A REST error body is ``{"label": "...", "message": "..."}``; the label decides
the class, so callers can ``except AuthError`` (replace the key, stop) apart from
``RateLimitedError`` (wait) and ``ServerError`` (retry later).
"""

from __future__ import annotations

import enum
from typing import Final


class GateError(Exception):
    """Base of everything the Gate client raises."""


class GateAPIError(GateError):
    """Gate answered with an error: HTTP status, Gate's label and message."""

    def __init__(self, status: int, label: str, message: str, *, request: str = "") -> None:
        self.status = status
        self.label = label
        self.message = message
        self.request = request
        where = f" on {request}" if request else ""
        super().__init__(f"Gate answered {status} {label}{where}: {message}{_hint(label)}")


class AuthError(GateAPIError):
    """The key, its signature or its permissions were refused."""


class InvalidKeyError(AuthError):
    """Gate does not know the key (deleted or never existed): replace it."""


class ClockSkewError(AuthError):
    """``REQUEST_EXPIRED``: the request's timestamp is outside Gate's 60 s window."""


class NotFoundError(GateAPIError):
    """The sub-account or key does not exist."""


class RateLimitedError(GateAPIError):
    """429 / ``TOO_MANY_REQUESTS`` after waiting for the reset as told."""


class ServerError(GateAPIError):
    """5xx or ``TOO_BUSY``: Gate could not serve the request now."""


class BadResponseError(GateError):
    """Gate's answer was not what the API document promises."""


_BY_LABEL: Final[dict[str, type[GateAPIError]]] = {
    "INVALID_KEY": InvalidKeyError,
    "INVALID_SIGNATURE": AuthError,
    "REQUEST_EXPIRED": ClockSkewError,
    "IP_FORBIDDEN": AuthError,
    "FORBIDDEN": AuthError,
    "READ_ONLY": AuthError,
    "MISSING_REQUIRED_HEADER": AuthError,
    "SUB_ACCOUNT_NOT_FOUND": NotFoundError,
    "NOT_FOUND": NotFoundError,
    "TOO_BUSY": ServerError,
    "TOO_MANY_REQUESTS": RateLimitedError,
}

_HINTS: Final[dict[str, str]] = {
    "INVALID_KEY": " (the API key is unknown to Gate: check gate.api_key, or re-create it)",
    "INVALID_SIGNATURE": (
        " (the secret does not match the key: check gate.api_secret / GATE_API_SECRET)"
    ),
    "REQUEST_EXPIRED": " (the clock is more than 60 s off Gate's: enable NTP/timesyncd)",
    "IP_FORBIDDEN": " (this machine's IP is not on the key's IP whitelist)",
    "FORBIDDEN": " (the key lacks the broker permission: enable it on Gate's key page)",
    "READ_ONLY": " (the key is read-only; this call needs write permission)",
}


def _hint(label: str) -> str:
    return _HINTS.get(label, "")


def error_for(status: int, label: str, message: str, request: str = "") -> GateAPIError:
    """The exception instance for an error answer."""
    cls = _BY_LABEL.get(label)
    if cls is None:
        if status == 429:
            cls = RateLimitedError
        elif status in (401, 403):
            cls = AuthError
        elif status == 404:
            cls = NotFoundError
        elif status >= 500:
            cls = ServerError
        else:
            cls = GateAPIError
    return cls(status, label, message, request=request)


class Refusal(enum.Enum):
    """Why Gate refused a key: only ``KEY`` is cured by another key."""

    KEY = "key"  # unknown, expired, deleted or not active yet
    CLOCK = "clock"  # REQUEST_EXPIRED: fix the time, keep the key
    IP = "ip"  # not on the key's IP whitelist: fix accounts.key_ip_whitelist
    PERMISSION = "permission"  # the key lacks a permission: fix accounts.key_permissions


def refusal_kind(message: str) -> Refusal:
    """Classify a refusal by Gate's label or message (REST body or WebSocket error text)."""
    text = message.upper()
    if "REQUEST_EXPIRED" in text:
        return Refusal.CLOCK
    if "WHITELIST" in text or "IP_FORBIDDEN" in text:
        return Refusal.IP
    if "PERMISSION" in text or "READ_ONLY" in text:
        return Refusal.PERMISSION
    return Refusal.KEY
