"""Gate APIv4 signatures: REST requests and unified WebSocket requests.

Pure functions: the caller passes the time in, so tests pin vectors and a
simulator can verify with the very same recipe.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote_plus, urlencode

REST_PREFIX: Final = "/api/v4"


@dataclass(frozen=True, slots=True)
class ApiCredentials:
    """An API key and its secret. The secret never shows in ``repr``."""

    key: str
    secret: str = field(repr=False)


def body_hash(body: bytes) -> str:
    """Hex SHA-512 of the request body (of ``b""`` when there is none)."""
    return hashlib.sha512(body).hexdigest()


def encode_query(params: Mapping[str, object]) -> str:
    """The query as it goes on the wire: ``urlencode`` of the parameters, as Gate's SDK sends it."""
    return urlencode(params)


def signed_query(query: str) -> str:
    """The query as Gate signs it: "without URL encode", i.e. ``unquote_plus`` of the wire form.

    Gate's SDK signs ``unquote_plus(urlencode(query))`` and sends ``urlencode(query)``;
    Gate decodes what it received and checks the signature over that. Signing the
    encoded form instead is only right while no value needs escaping.
    """
    return unquote_plus(query)


def rest_signature(
    secret: str, method: str, path: str, query: str, body: bytes, timestamp: str
) -> str:
    """HMAC-SHA512 hex of ``METHOD\\nPATH\\nQUERY\\nsha512(body)\\nTIMESTAMP``.

    ``path`` includes the ``/api/v4`` prefix; ``query`` is the query as Gate signs
    it (:func:`signed_query` of what is sent, no leading ``?``).
    """
    message = f"{method.upper()}\n{path}\n{query}\n{body_hash(body)}\n{timestamp}"
    return hmac.new(secret.encode(), message.encode(), hashlib.sha512).hexdigest()


def rest_headers(
    creds: ApiCredentials, method: str, path: str, query: str, body: bytes, now: float
) -> dict[str, str]:
    """The ``KEY`` / ``Timestamp`` / ``SIGN`` headers for one REST request.

    ``query`` is the query exactly as sent (encoded); it is signed decoded, as Gate does.
    """
    timestamp = str(int(now))
    return {
        "KEY": creds.key,
        "Timestamp": timestamp,
        "SIGN": rest_signature(creds.secret, method, path, signed_query(query), body, timestamp),
    }


def ws_signature(secret: str, channel: str, event: str, time: int) -> str:
    """HMAC-SHA512 hex of ``channel=<c>&event=<e>&time=<t>``."""
    message = f"channel={channel}&event={event}&time={time}"
    return hmac.new(secret.encode(), message.encode(), hashlib.sha512).hexdigest()


def ws_auth(channel: str, event: str, time: int, creds: ApiCredentials) -> dict[str, str]:
    """The ``auth`` object of a unified WebSocket request."""
    return {
        "method": "api_key",
        "KEY": creds.key,
        "SIGN": ws_signature(creds.secret, channel, event, time),
    }


def signatures_match(expected: str, given: str) -> bool:
    """Constant-time comparison of two hex signatures."""
    return hmac.compare_digest(expected.encode(), given.encode())
