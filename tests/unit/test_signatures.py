"""Signature comparison: equal hex strings match, anything else does not."""

from __future__ import annotations

import pytest

from collector.gate.signing import signatures_match, ws_signature

SIGN = ws_signature("secret-1", "unified.assets", "subscribe", 1716796362)


@pytest.mark.parametrize(
    ("given", "match"),
    [
        (SIGN, True),
        (SIGN.upper(), False),
        (SIGN[:-1], False),
        (SIGN[:-1] + ("0" if SIGN[-1] != "0" else "1"), False),
        ("", False),
    ],
)
def test_signatures_match_only_when_equal(given: str, match: bool) -> None:
    assert signatures_match(SIGN, given) is match
