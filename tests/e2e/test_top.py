"""``gate-collector top`` in a real terminal (tmux) against a running collector."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from collector.app.top import render
from collector.devtools.simulator import Simulator
from tests.helpers import start_collector, wait_ready
from tests.servers import InfluxServer

# the fixture, used by name


def test_render_puts_the_worst_accounts_first() -> None:
    status = {
        "ready": False,
        "reason": "over capacity",
        "sessions": {"active": 2, "over_capacity": 1},
        "rates": {"updates_received_per_s": 3.5, "points_written_per_s": 7.0},
        "stats": {"buffer_size": 12, "spool_bytes": 0},
        "accounts": [
            {"account": 1, "state": "active", "gaps": 0, "reconnects": 0, "frames": 9},
            {"account": 2, "state": "active", "gaps": 4, "reconnects": 1, "frames": 9},
            {"account": 3, "state": "over_capacity"},
        ],
    }
    screen = render(status, "http://x").splitlines()
    assert "NOT READY: over capacity" in screen
    assert "sessions  active 2  over_capacity 1" in screen
    assert "updates/s        3.5" in screen[3]
    rows = [line.split()[0] for line in screen[-3:]]  # not active, then the most gaps
    assert rows == ["3", "2", "1"]


def tmux(*args: str) -> str:
    return subprocess.run(
        ["tmux", "-L", "gate-collector-test", *args], capture_output=True, text=True, check=False
    ).stdout


async def test_top_shows_the_sessions_and_quits_on_q(
    small_gate: Simulator, influxdb: InfluxServer, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    assert shutil.which("tmux"), "tmux is installed by deploy/install-test-servers.sh"
    collector, url = await start_collector(small_gate, influxdb, tmp_path, "top")
    command = f"{sys.executable} -m collector.app.cli top --url {url} --interval 0.2"
    try:
        await wait_ready(http, url, 200, "18/18 sessions connected")
        tmux(
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "120",
            "-y",
            "40",
            "-c",
            str(Path.cwd()),
            command,
        )
        with trio.fail_after(30):
            while "sessions  active 18" not in (screen := tmux("capture-pane", "-p", "-t", "top")):
                await trio.sleep(0.1)
        assert "ready: 18/18 sessions connected" in screen
        assert "shard 0/1" in screen
        tmux("send-keys", "-t", "top", "q")
        with trio.fail_after(10):
            while "top" in tmux("list-sessions", "-F", "#{session_name}"):
                await trio.sleep(0.1)
    finally:
        tmux("kill-server")
        assert await collector.stop() == 0
