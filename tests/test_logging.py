"""Log set-up: secrets masked anywhere, journald priorities, tracebacks without locals."""

from __future__ import annotations

import io
import json

import structlog

from collector import logging
from collector.gate.signing import rest_signature

SIGNATURE = rest_signature("s3cret", "GET", "/api/v4/broker/info", "", b"", "1")
FERNET = "gAAAAABl" + "x" * 60


def render(json_mode: bool, **event: object) -> str:
    out = io.StringIO()
    logging.configure("debug", stream=out, json=json_mode)
    structlog.get_logger("t").info("something", **event)
    return out.getvalue()


def test_secret_named_keys_are_masked_at_any_depth() -> None:
    line = render(
        True,
        secret="hunter2",
        request={"headers": {"SIGN": "abc", "KEY": "k1"}},
        password="pw",
        token="tk",
        items=[{"api_secret": "zz"}],
    )
    assert "hunter2" not in line and '"pw"' not in line and '"tk"' not in line
    assert '"zz"' not in line and '"abc"' not in line
    assert '"k1"' in line  # an API key id is not a secret


def test_signatures_and_fernet_tokens_are_masked_inside_any_text() -> None:
    line = render(True, answer=f"bad request SIGN={SIGNATURE} stored {FERNET}")
    assert SIGNATURE not in line and FERNET not in line
    assert "***" in line


def test_json_lines_carry_the_journald_priority() -> None:
    out = io.StringIO()
    logging.configure("debug", stream=out, json=True)
    log = structlog.get_logger("t")
    log.error("bad", account=1)
    log.warning("meh")
    log.info("fine")
    lines = out.getvalue().splitlines()
    assert [line[:3] for line in lines] == ["<3>", "<4>", "<6>"]
    assert json.loads(lines[0][3:])["account"] == 1


def test_exceptions_render_without_locals() -> None:
    out = io.StringIO()
    logging.configure("debug", stream=out, json=True)

    def fail(api_secret: str) -> None:
        raise ValueError("boom")

    secret = "very-" + "secret-local"
    try:
        fail(secret)
    except ValueError:
        structlog.get_logger("t").exception("failed")
    text = out.getvalue()
    assert "boom" in text and "very-secret-local" not in text


def test_console_mode_is_readable_and_redacted() -> None:
    line = render(False, secret="hunter2", account=5)
    assert "something" in line and "account=5" in line and "hunter2" not in line
