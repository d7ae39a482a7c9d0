"""Which refusal a Gate label or message is (tests/MUTATION.md: these mutants had no test)."""

from __future__ import annotations

import pytest

from collector.gate.errors import Refusal, refusal_kind


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
    }
