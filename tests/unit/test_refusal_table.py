"""The one refusal table: REST labels and WebSocket error texts mean the same thing.

Pure: no server. Each label of :data:`collector.gate.errors.LABELS` gives one
meaning, and a WebSocket refusal carrying it, wherever Gate puts it, is classified
by that meaning, never by a second list of markers that could disagree.
"""

from __future__ import annotations

import json

import pytest

from collector.gate.errors import (
    CONFIG_REFUSALS,
    LABELS,
    AuthError,
    Refusal,
    error_body,
    error_for,
    find_refusal,
    refusal_hint,
    refusal_kind,
)
from collector.gate.protocol import ErrorKind, classify

# gateio/WebSocket-API#13: a bad signature comes back as code 2, the label inside.
WS_AUTH_TEXT = (
    "http get status code err, status : 400, url : http://127.0.0.1:8130/ws_auth, "
    'info : {"label":"INVALID_SIGNATURE","message":"Signature mismatch"}\n'
)
# gateio/gateapi-python#14: code 2 with no label at all.
UNLABELLED_AUTH_TEXT = "auth faild , auth data : &{{87260}}"
# What a session does with each meaning.
SESSION_KIND = {
    Refusal.KEY: ErrorKind.AUTH,
    Refusal.CLOCK: ErrorKind.AUTH,
    Refusal.NOT_FOUND: ErrorKind.AUTH,
    Refusal.IP: ErrorKind.PERMISSION,
    Refusal.PERMISSION: ErrorKind.PERMISSION,
    Refusal.LOCKED: ErrorKind.PERMISSION,
    Refusal.RATE: ErrorKind.SERVER,
    Refusal.SERVER: ErrorKind.SERVER,
    Refusal.ARGUMENT: ErrorKind.ARGUMENT,
    Refusal.NOT_UNIFIED: ErrorKind.PERMISSION,
}


def gate_json(label: str, message: str = "refused") -> str:
    return json.dumps({"label": label, "message": message}) + "\n"


@pytest.mark.parametrize("label", sorted(LABELS))
@pytest.mark.parametrize("code", [1, 2, 3, 4])
def test_a_label_means_the_same_on_the_websocket_whatever_the_code(label: str, code: int) -> None:
    meaning = LABELS[label].refusal
    assert refusal_kind(gate_json(label)) is meaning
    assert classify(code, gate_json(label)) is SESSION_KIND[meaning]


@pytest.mark.parametrize("label", sorted(LABELS))
def test_a_label_means_the_same_in_a_rest_body(label: str) -> None:
    error = error_for(400, label, "refused")
    assert type(error) is LABELS[label].error
    assert find_refusal(error.label) is LABELS[label].refusal


def test_read_only_is_a_permission_refusal_on_both_sides() -> None:
    assert isinstance(error_for(403, "READ_ONLY", "API key is read-only"), AuthError)
    assert refusal_kind("READ_ONLY") is Refusal.PERMISSION
    assert classify(4, gate_json("READ_ONLY")) is ErrorKind.PERMISSION


@pytest.mark.parametrize(
    ("label", "cls"),
    [("INVALID_CREDENTIALS", Refusal.KEY), ("ACCOUNT_LOCKED", Refusal.LOCKED)],
)
def test_the_added_labels_have_their_meaning(label: str, cls: Refusal) -> None:
    assert find_refusal(label) is cls


def test_a_locked_sub_account_is_loud_not_key_churn() -> None:
    assert classify(4, gate_json("SUB_ACCOUNT_LOCKED")) is ErrorKind.PERMISSION
    assert Refusal.LOCKED in CONFIG_REFUSALS
    assert "unlock" in refusal_hint(Refusal.LOCKED)


def test_gates_ws_auth_text_in_a_code_2_refusal_is_a_dead_signature() -> None:
    assert classify(2, WS_AUTH_TEXT) is ErrorKind.AUTH
    assert refusal_kind(WS_AUTH_TEXT) is Refusal.KEY


@pytest.mark.parametrize("code", [1, 2])
def test_a_code_1_or_2_refusal_without_a_label_is_an_argument_refusal(code: int) -> None:
    assert classify(code, UNLABELLED_AUTH_TEXT) is ErrorKind.ARGUMENT


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("service error", ErrorKind.SERVER),
        ("AUTH service unavailable", ErrorKind.SERVER),
        ("authentication backend busy", ErrorKind.SERVER),
        (gate_json("INVALID_KEY"), ErrorKind.AUTH),
        (gate_json("REQUEST_EXPIRED"), ErrorKind.AUTH),
    ],
)
def test_a_code_3_service_error_is_auth_only_with_an_auth_label(
    message: str, kind: ErrorKind
) -> None:
    assert classify(3, message) is kind


def test_code_4_without_a_label_is_still_auth() -> None:
    assert classify(4, "invalid key") is ErrorKind.AUTH


@pytest.mark.parametrize(
    "text",
    [
        "SUB_ACCOUNT_NOT_FOUND",  # NOT_FOUND inside a longer label is not NOT_FOUND
        "IP_FORBIDDEN",  # FORBIDDEN inside IP_FORBIDDEN is not FORBIDDEN
    ],
)
def test_a_label_inside_a_longer_label_is_not_matched(text: str) -> None:
    assert find_refusal(text) is LABELS[text].refusal


def test_a_word_that_merely_contains_a_label_is_no_label() -> None:
    assert find_refusal("NOT_FOUNDATION") is None
    assert find_refusal("XINVALID_KEY") is None


def test_a_forbidden_label_about_the_whitelist_is_an_ip_refusal() -> None:
    text = gate_json("FORBIDDEN", "Request IP not in whitelist: 203.0.113.7")
    assert refusal_kind(text) is Refusal.IP


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"label": "INVALID_KEY", "message": "Invalid key provided"},
            ("INVALID_KEY", "Invalid key provided"),
        ),
        ({"label": "FORBIDDEN", "detail": "no permission"}, ("FORBIDDEN", "no permission")),
        (
            {"label": "FORBIDDEN", "message": "", "detail": "no permission"},
            ("FORBIDDEN", "no permission"),
        ),
        ({"detail": "Not Found"}, ("", "Not Found")),
        ({"label": None, "message": "m"}, ("", "m")),
        ({}, ("", "")),
        (["not", "an", "object"], ("", "<raw>")),
        (None, ("", "<raw>")),
    ],
)
def test_the_error_text_is_message_or_detail(body: object, expected: tuple[str, str]) -> None:
    assert error_body(body, "<raw>") == expected


# -- the same refusal from a REST answer and a WebSocket text --------------------------------


@pytest.mark.parametrize(
    ("label", "message"),
    [
        *((label, "refused") for label in sorted(LABELS)),
        ("FORBIDDEN", "Request IP not in whitelist: 203.0.113.7"),
        ("FORBIDDEN", "API key lacks the permission unified"),
        ("INVALID_KEY", "Invalid key provided"),
        ("ACCOUNT_NOT_UNIFIED", "the account is not in unified account mode"),
        ("", "no permission"),
        ("", "not a label at all"),
    ],
)
def test_a_refusal_means_the_same_from_rest_and_from_the_websocket(
    label: str, message: str
) -> None:
    rest = error_for(403, label, message, request="GET /unified/accounts")
    websocket = gate_json(label, message)
    assert rest.refusal is find_refusal(websocket)
    if rest.refusal is not None:
        assert refusal_kind(websocket) is rest.refusal
        assert classify(4, websocket) is SESSION_KIND[rest.refusal]


def test_the_words_of_a_rest_refusal_count_not_only_its_label() -> None:
    error = error_for(403, "FORBIDDEN", "Request IP not in whitelist: 203.0.113.7")
    assert error.refusal is Refusal.IP
    assert error_for(403, "FORBIDDEN", "no way").refusal is Refusal.PERMISSION
    assert error_for(400, "", "bad").refusal is None


@pytest.mark.parametrize(
    "text",
    [
        "ACCOUNT_NOT_UNIFIED",
        "the account is not in unified account mode",
        "Unified account mode is not enabled",
    ],
)
def test_a_refusal_naming_unified_mode_is_not_unified(text: str) -> None:
    assert find_refusal(text) is Refusal.NOT_UNIFIED
    assert Refusal.NOT_UNIFIED in CONFIG_REFUSALS
    assert "unified account mode" in refusal_hint(Refusal.NOT_UNIFIED)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unknown channel unified.asset_detail", None),  # a channel, not the mode
        ("GET /api/v4/unified/accounts failed", None),  # a path
        ("wss://api.gateio.ws/ws/v4/unified", None),
        (gate_json("FORBIDDEN", "the API key has no permission for unified"), Refusal.PERMISSION),
        (gate_json("TOO_BUSY", "unified service busy"), Refusal.SERVER),
        (gate_json("INVALID_KEY", "unified"), Refusal.KEY),
        ("unified auth failed", None),  # the word alone: left to the code
        ("invalid argument: unified asset_detail currency XYZ", None),
        ("account 7 is not unified", Refusal.NOT_UNIFIED),
        ("UNIFIED_MARGIN not enabled", Refusal.NOT_UNIFIED),
    ],
)
def test_unified_as_a_name_or_beside_another_refusal_is_not_the_mode(
    text: str, expected: Refusal | None
) -> None:
    assert find_refusal(text) is expected


@pytest.mark.parametrize(
    ("code", "text", "kind"),
    [
        (4, "unified auth failed", ErrorKind.AUTH),
        (2, "invalid argument: unified asset_detail currency XYZ", ErrorKind.ARGUMENT),
    ],
)
def test_a_websocket_refusal_that_merely_says_unified_is_read_by_its_code(
    code: int, text: str, kind: ErrorKind
) -> None:
    assert classify(code, text) is kind


@pytest.mark.parametrize("kind", list(Refusal))
def test_only_a_refusal_no_new_key_cures_has_a_hint(kind: Refusal) -> None:
    hint = refusal_hint(kind)
    if kind in CONFIG_REFUSALS:
        assert "no new key helps" in hint or "a new key would be refused" in hint
    else:
        assert hint == ""
