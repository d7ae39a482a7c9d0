"""Log set-up: secrets masked anywhere, journald priorities, tracebacks without locals."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import structlog

from collector.base import logging
from collector.gate.signing import rest_signature

SIGNATURE = rest_signature("s3cret", "GET", "/api/v4/broker/info", "", b"", "1")
FERNET = "gAAAAABl" + "x" * 60


def render(json_mode: bool, **event: object) -> str:
    out = io.StringIO()
    logging.configure("debug", stream=out, fmt="json" if json_mode else "console")
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


def test_journal_lines_carry_the_journald_priority() -> None:
    out = io.StringIO()
    logging.configure("debug", stream=out, fmt="journal")
    log = structlog.get_logger("t")
    log.error("bad", account=1)
    log.warning("meh")
    log.info("fine")
    lines = out.getvalue().splitlines()
    assert [line[:3] for line in lines] == ["<3>", "<4>", "<6>"]
    assert json.loads(lines[0][3:])["account"] == 1


def test_exceptions_render_without_locals() -> None:
    out = io.StringIO()
    logging.configure("debug", stream=out, fmt="json")

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


def test_json_lines_parse_as_json_when_not_under_journald(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    with (tmp_path / "out.log").open("w") as out:  # a pipe to Docker is no tty either
        logging.configure("info", stream=out)
        structlog.get_logger("t").warning("meh", account=7)
    (line,) = (tmp_path / "out.log").read_text().splitlines()
    assert json.loads(line)["account"] == 7


def test_journal_format_is_the_default_only_on_journalds_own_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (tmp_path / "journal").open("w") as journal, (tmp_path / "other").open("w") as other:
        stat = os.fstat(journal.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino}")
        assert logging.default_format(journal) == "journal"
        # Inherited by a child that writes elsewhere: plain JSON there.
        assert logging.default_format(other) == "json"
        monkeypatch.setenv("JOURNAL_STREAM", "garbage")
        assert logging.default_format(journal) == "json"


def test_set_level_changes_the_level_and_keeps_the_format() -> None:
    out = io.StringIO()
    logging.configure("info", stream=out, fmt="journal")
    log = structlog.get_logger("t")
    log.debug("hidden")
    logging.set_level("debug")
    log.debug("shown")
    (line,) = out.getvalue().splitlines()
    assert line.startswith("<7>") and json.loads(line[3:])["event"] == "shown"
    assert logging.current_level() == "debug"
