"""Every row of the README's "Bad input" table, run as written: the command says
what it says in one line (stderr; ``check``: its FAIL line on stdout), with no
traceback, creates nothing, and exits with the documented code."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.helpers import EXE, clean_env

README = Path(__file__).resolve().parents[2] / "README.md"
MARK = "<!-- bad-input table: tests/e2e/test_bad_input.py reads it -->"
ROW = re.compile(r"^\| (\S+) \| `(.+?)` \| `+ ?(.+?) ?`+ \| (\d+) \|$")


def rows() -> list[tuple[str, str, str, int]]:
    table = README.read_text().split(MARK, 1)[1].split("\n\n", 1)[0]
    found = [ROW.match(line) for line in table.splitlines()[3:]]
    assert all(found), "every row of the table is | command | `input` | `says` | exit |"
    return [(m[1], m[2], m[3], int(m[4])) for m in found if m]


def test_the_table_covers_every_command() -> None:
    commands = {row[0] for row in rows()}
    assert commands == {
        "any", "run", "check", "accounts", "plan", "top",
        "simulate", "demo", "genkey", "keys", "influx-setup",
    }  # fmt: skip


@pytest.mark.parametrize(("command", "line", "says", "code"), rows(), ids=lambda v: str(v))
def test_bad_input(tmp_path: Path, command: str, line: str, says: str, code: int) -> None:
    config = tmp_path / "collector.toml"  # valid; Gate and InfluxDB on dead ports
    config.write_text(
        '[gate]\nrest_url = "http://127.0.0.1:9/api/v4"\nws_url = "ws://127.0.0.1:9/ws"\n'
        f'api_key = "k"\napi_secret = "s"\n[state]\ndir = "{tmp_path}/state"\n'
        '[influx]\nurl = "http://127.0.0.1:9"\n'
    )
    words = shlex.split(line.replace("{config}", str(config)).replace("{dir}", str(tmp_path)))
    env = clean_env(HOME=str(tmp_path))
    while "=" in words[0]:
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    assert words[0] == "gate-collector"
    result = subprocess.run(
        [*EXE, *words[1:]], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    said = result.stderr + result.stdout  # stdout: check's ok: and FAIL: lines
    lines = [text for text in said.splitlines() if not text.startswith("ok: ")]
    assert "Traceback" not in result.stderr + result.stdout
    assert len(lines) == 1, said
    assert says in lines[0]
    assert result.returncode == code, said
    assert not (tmp_path / "state").exists()  # bad input creates nothing
