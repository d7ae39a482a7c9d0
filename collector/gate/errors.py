"""Gate's error labels: one table for REST answers and WebSocket refusals.

A REST error body is ``{"label": "...", "message": "..."}`` (some answers say
``detail`` instead of ``message``); the label decides the class, so callers can
``except AuthError`` (replace the key, stop) apart from ``RateLimitedError``
(wait) and ``ServerError`` (retry later). A WebSocket refusal carries the same
labels inside its message text (code 2 ``... ws_auth ... {"label":...}``, code 4
``{"label":...}``). :data:`LABELS` says once, for both, what each label means
(:class:`Refusal`), which exception it raises and what fixes it;
:func:`find_refusal` reads a REST error (:attr:`GateAPIError.refusal`: its label
and message) and a WebSocket error text the same way.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
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

    @property
    def refusal(self) -> Refusal | None:
        """What the refusal means, read from its label and words as a WebSocket text is."""
        return find_refusal(f"{self.label} {self.message}")


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


class Refusal(enum.Enum):
    """What a refusal means, and so what cures it: only ``KEY`` is cured by another key."""

    KEY = "key"  # unknown, expired, deleted, not active yet, or a bad signature
    CLOCK = "clock"  # REQUEST_EXPIRED: fix the time, keep the key
    IP = "ip"  # not on the key's IP whitelist: fix accounts.key_ip_whitelist
    PERMISSION = "permission"  # the key lacks a permission: fix accounts.key_permissions
    LOCKED = "locked"  # the account is locked on Gate: a person unlocks it
    NOT_FOUND = "not_found"  # the sub-account (or key) does not exist
    RATE = "rate"  # rate limited: wait
    SERVER = "server"  # Gate could not serve it now: retry later
    ARGUMENT = "argument"  # our request was wrong
    NOT_UNIFIED = "not_unified"  # the account is not in unified mode: a person switches it


@dataclass(frozen=True, slots=True)
class Label:
    """One of Gate's error labels: what it means, the exception it raises, the fix."""

    refusal: Refusal
    error: type[GateAPIError]
    hint: str = ""


# THE table of Gate's labels, for REST bodies and WebSocket error texts alike (Gate's
# API v4 "Error label" list; the WebSocket carries the same labels inside its message).
LABELS: Final[dict[str, Label]] = {
    "INVALID_KEY": Label(
        Refusal.KEY,
        InvalidKeyError,
        " (the API key is unknown to Gate: check gate.api_key, or re-create it)",
    ),
    "INVALID_CREDENTIALS": Label(
        Refusal.KEY,
        InvalidKeyError,
        " (Gate does not accept this key and secret: check gate.api_key / gate.api_secret)",
    ),
    "INVALID_SIGNATURE": Label(
        Refusal.KEY,
        AuthError,
        " (the secret does not match the key: check gate.api_secret / GATE_API_SECRET)",
    ),
    "REQUEST_EXPIRED": Label(
        Refusal.CLOCK,
        ClockSkewError,
        " (the clock is more than 60 s off Gate's: enable NTP/timesyncd)",
    ),
    "IP_FORBIDDEN": Label(
        Refusal.IP, AuthError, " (this machine's IP is not on the key's IP whitelist)"
    ),
    "FORBIDDEN": Label(
        Refusal.PERMISSION,
        AuthError,
        " (the key lacks the broker permission: enable it on Gate's key page)",
    ),
    "READ_ONLY": Label(
        Refusal.PERMISSION, AuthError, " (the key is read-only; this call needs write permission)"
    ),
    "ACCOUNT_LOCKED": Label(
        Refusal.LOCKED, AuthError, " (the account is locked on Gate: unlock it on Gate's site)"
    ),
    "SUB_ACCOUNT_LOCKED": Label(
        Refusal.LOCKED,
        AuthError,
        " (the sub-account is locked: unlock it on Gate's site or through the Broker API)",
    ),
    # Our request lacked a header: no key cures that, and it is still an auth refusal.
    "MISSING_REQUIRED_HEADER": Label(Refusal.ARGUMENT, AuthError),
    "SUB_ACCOUNT_NOT_FOUND": Label(Refusal.NOT_FOUND, NotFoundError),
    "NOT_FOUND": Label(Refusal.NOT_FOUND, NotFoundError),
    "TOO_BUSY": Label(Refusal.SERVER, ServerError),
    "TOO_MANY_REQUESTS": Label(Refusal.RATE, RateLimitedError),
}

# Words Gate uses without a label ("Request IP not in whitelist: ...", "no permission").
_PHRASES: Final = (("WHITELIST", Refusal.IP), ("PERMISSION", Refusal.PERMISSION))
# Gate's answer for an account not in unified mode is undocumented: a refusal naming
# the mode ("unified account", "unified mode", "not (in) unified"), not a channel
# (``unified.assets``), a path (``/unified/``) or any text that merely says "unified"
# ("unified auth failed" is the key's refusal, "unified asset_detail XYZ" an argument's).
_UNIFIED_WORD: Final = re.compile(
    r"(?<![./])(UNIFIED[\s_-]+(ACCOUNT|MODE|MARGIN)|NOT[\s_-]+(IN[\s_-]+)?UNIFIED)(?![./])"
)
# When a text names several, the one a person must act on first wins: a clock refusal
# says nothing about the key yet, an IP refusal nothing about its permissions.
PRECEDENCE: Final = (
    Refusal.CLOCK,
    Refusal.IP,
    Refusal.PERMISSION,
    Refusal.LOCKED,
    Refusal.KEY,
    Refusal.NOT_FOUND,
    Refusal.RATE,
    Refusal.SERVER,
    Refusal.ARGUMENT,
    Refusal.NOT_UNIFIED,
)
# A label as a whole word, in any case: IP_FORBIDDEN is not FORBIDDEN, a JSON string
# ``{"label":"INVALID_KEY"}`` or Gate's ``ws_auth ... info : {...}`` text still is one.
_LABEL_WORD: Final = re.compile(
    r"(?<![A-Z0-9_])(" + "|".join(sorted(LABELS, key=len, reverse=True)) + r")(?![A-Z0-9_])"
)


def _hint(label: str) -> str:
    row = LABELS.get(label)
    return row.hint if row is not None else ""


def error_for(status: int, label: str, message: str, request: str = "") -> GateAPIError:
    """The exception instance for an error answer: by label first, by status without one."""
    row = LABELS.get(label)
    cls: type[GateAPIError]
    if row is not None:
        cls = row.error
    elif status == 429:
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


def error_body(body: object, fallback: str) -> tuple[str, str]:
    """``(label, text)`` of a REST error body; Gate's text is ``message`` or ``detail``.

    ``fallback`` (the raw body's start) is the text when the body is not an object.
    """
    if not isinstance(body, dict):
        return "", fallback
    text = body.get("message")
    if text is None or text == "":
        text = body.get("detail", "")
    return str(body.get("label") or ""), str(text)


def find_refusal(text: str) -> Refusal | None:
    """The refusal a label or Gate's words in ``text`` name (the first by PRECEDENCE), or None."""
    upper = text.upper()
    found = {LABELS[m].refusal for m in _LABEL_WORD.findall(upper)}
    found.update(kind for phrase, kind in _PHRASES if phrase in upper)
    if _UNIFIED_WORD.search(upper):
        found.add(Refusal.NOT_UNIFIED)
    return next((kind for kind in PRECEDENCE if kind in found), None)


def refusal_kind(message: str) -> Refusal:
    """Why Gate refused a key (REST body or WebSocket error text); a bare refusal is the key."""
    return find_refusal(message) or Refusal.KEY


# Refusals no new key cures: the key's configuration, or the account, needs a person.
CONFIG_REFUSALS: Final = frozenset(
    {Refusal.IP, Refusal.PERMISSION, Refusal.LOCKED, Refusal.NOT_UNIFIED}
)


_CONFIG_HINTS: Final[dict[Refusal, str]] = {
    Refusal.IP: "a new key would be refused the same way: check accounts.key_ip_whitelist",
    Refusal.PERMISSION: "a new key would be refused the same way: check "
    "accounts.key_permissions (unified data needs the unified permission)",
    Refusal.LOCKED: "the account is locked on Gate: unlock it; no new key helps",
    Refusal.NOT_UNIFIED: "the account is not in unified account mode: switch it on Gate; "
    "no new key helps",
}


def refusal_hint(kind: Refusal) -> str:
    """What a person does about a refusal no new key cures ("" for the others)."""
    return _CONFIG_HINTS.get(kind, "")
