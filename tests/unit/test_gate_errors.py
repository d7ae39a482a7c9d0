"""Gate's error answers -> exception classes: one row per label and per unlabelled status.

The class decides what a caller does (replace the key, wait, retry later, give
up), so each row pins the exact class, not a base it happens to share.
"""

from __future__ import annotations

import pytest

from collector.gate import errors
from collector.gate.errors import (
    AuthError,
    ClockSkewError,
    GateAPIError,
    InvalidKeyError,
    NotFoundError,
    RateLimitedError,
    Refusal,
    ServerError,
    error_for,
    refusal_kind,
)

# (label, the class whatever the status says)
BY_LABEL: list[tuple[str, type[GateAPIError]]] = [
    ("INVALID_KEY", InvalidKeyError),
    ("INVALID_CREDENTIALS", InvalidKeyError),
    ("INVALID_SIGNATURE", AuthError),
    ("REQUEST_EXPIRED", ClockSkewError),
    ("IP_FORBIDDEN", AuthError),
    ("FORBIDDEN", AuthError),
    ("READ_ONLY", AuthError),
    ("MISSING_REQUIRED_HEADER", AuthError),
    ("ACCOUNT_LOCKED", AuthError),
    ("SUB_ACCOUNT_LOCKED", AuthError),
    ("SUB_ACCOUNT_NOT_FOUND", NotFoundError),
    ("NOT_FOUND", NotFoundError),
    ("TOO_BUSY", ServerError),
    ("TOO_MANY_REQUESTS", RateLimitedError),
]


@pytest.mark.parametrize(("label", "cls"), BY_LABEL)
@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 503])
def test_the_label_decides_the_class_whatever_the_status(
    label: str, cls: type[GateAPIError], status: int
) -> None:
    error = error_for(status, label, "m")
    assert type(error) is cls
    assert (error.status, error.label, error.message) == (status, label, "m")


def test_the_table_covers_every_label_the_module_knows() -> None:
    assert {label for label, _ in BY_LABEL} == set(errors.LABELS)


# (status, the class when the label is unknown or missing)
BY_STATUS: list[tuple[int, type[GateAPIError]]] = [
    (400, GateAPIError),  # our request was wrong: not retried, not auth
    (401, AuthError),
    (403, AuthError),
    (404, NotFoundError),
    (405, GateAPIError),
    (413, GateAPIError),
    (422, GateAPIError),  # never retried as if Gate were busy
    (428, GateAPIError),
    (429, RateLimitedError),
    (499, GateAPIError),
    (500, ServerError),
    (502, ServerError),
    (503, ServerError),
    (599, ServerError),
]


@pytest.mark.parametrize("label", ["", "SOMETHING_NEW"])
@pytest.mark.parametrize(("status", "cls"), BY_STATUS)
def test_an_unlabelled_status_decides_the_class(
    status: int, cls: type[GateAPIError], label: str
) -> None:
    assert type(error_for(status, label, "m")) is cls


@pytest.mark.parametrize("cls", [InvalidKeyError, ClockSkewError])
def test_auth_subclasses_are_auth_errors(cls: type[GateAPIError]) -> None:
    assert issubclass(cls, AuthError)


@pytest.mark.parametrize("cls", [NotFoundError, RateLimitedError, ServerError])
def test_other_classes_are_not_auth_errors(cls: type[GateAPIError]) -> None:
    assert not issubclass(cls, AuthError)


@pytest.mark.parametrize(
    ("label", "hint"),
    [
        ("INVALID_KEY", "check gate.api_key, or re-create it"),
        ("INVALID_SIGNATURE", "check gate.api_secret / GATE_API_SECRET"),
        ("REQUEST_EXPIRED", "enable NTP/timesyncd"),
        ("IP_FORBIDDEN", "IP whitelist"),
        ("FORBIDDEN", "enable it on Gate's key page"),
        ("READ_ONLY", "needs write permission"),
    ],
)
def test_auth_labels_say_the_fix(label: str, hint: str) -> None:
    text = str(error_for(401, label, "refused", "GET /x"))
    assert text.startswith(f"Gate answered 401 {label} on GET /x: refused (")
    assert text.endswith(f"{hint})")


def test_the_message_names_status_label_request_and_gates_words() -> None:
    error = error_for(404, "NOT_FOUND", "no such sub-account", "GET /api/v4/x")
    assert str(error) == "Gate answered 404 NOT_FOUND on GET /api/v4/x: no such sub-account"
    assert error.request == "GET /api/v4/x"


def test_without_a_request_the_message_leaves_it_out() -> None:
    assert str(error_for(503, "TOO_BUSY", "busy")) == "Gate answered 503 TOO_BUSY: busy"
    assert error_for(503, "TOO_BUSY", "busy").request == ""


def test_an_error_made_directly_has_no_request() -> None:
    error = GateAPIError(500, "X", "m")
    assert error.request == ""
    assert str(error) == "Gate answered 500 X: m"


# -- Which refusal a Gate label or message is (tests/MUTATION.md: these mutants had no test)


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("REQUEST_EXPIRED", Refusal.CLOCK),
        ("gate refused: request_expired, check the clock", Refusal.CLOCK),
        ("IP_FORBIDDEN", Refusal.IP),
        ("ip not in whitelist", Refusal.IP),
        ("WHITELIST", Refusal.IP),
        ("FORBIDDEN: permission denied", Refusal.PERMISSION),
        ("key is read_only", Refusal.PERMISSION),
        ("READ_ONLY", Refusal.PERMISSION),
        ("INVALID_KEY", Refusal.KEY),
        ("INVALID_SIGNATURE", Refusal.KEY),
        ("", Refusal.KEY),
        # the first rule that matches wins: clock, then IP, then permission
        ("REQUEST_EXPIRED IP_FORBIDDEN", Refusal.CLOCK),
        ("IP_FORBIDDEN READ_ONLY", Refusal.IP),
    ],
)
def test_refusal_kind(message: str, kind: Refusal) -> None:
    assert refusal_kind(message) is kind


def test_the_kinds_have_their_names() -> None:
    assert {k.value for k in Refusal} == {
        "key",
        "clock",
        "ip",
        "permission",
        "locked",
        "not_found",
        "rate",
        "server",
        "argument",
        "not_unified",
    }
