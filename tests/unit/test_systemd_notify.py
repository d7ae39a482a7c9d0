"""sd_notify over a fake NOTIFY_SOCKET, and the watchdog interval."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from collector.base.systemd import Notifier


@pytest.fixture
def listener(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(5)
    return sock


def messages(sock: socket.socket, count: int) -> list[str]:
    return [sock.recv(4096).decode() for _ in range(count)]


def test_ready_status_watchdog_stopping_reach_systemd(
    listener: socket.socket, tmp_path: Path
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify")})
    assert notifier.enabled
    notifier.ready("0/10 sessions connected")
    notifier.status("10/10 sessions connected")
    notifier.watchdog()
    notifier.stopping()
    assert messages(listener, 4) == [
        "READY=1\nSTATUS=0/10 sessions connected",
        "STATUS=10/10 sessions connected",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=stopping: flushing to InfluxDB",
    ]


def test_abstract_namespace_socket() -> None:
    name = f"gate-collector-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    Notifier({"NOTIFY_SOCKET": "@" + name}).watchdog()
    assert sock.recv(100) == b"WATCHDOG=1"


def test_without_notify_socket_it_is_a_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    with capture_logs() as logs:
        notifier.ready("x")
        notifier.watchdog()
    assert logs == []  # nothing to send to: no send tried, no warning


def test_a_vanished_socket_is_logged_not_raised(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with capture_logs() as logs:
        notifier.watchdog()
    assert [(entry["event"], entry["log_level"]) for entry in logs] == [
        ("sd_notify_failed", "warning")
    ]
    assert "FileNotFoundError" in logs[0]["error"]


def test_close_disables_further_notifications(listener: socket.socket, tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify")})
    notifier.close()
    assert not notifier.enabled
    notifier.watchdog()
    listener.setblocking(False)
    with pytest.raises(BlockingIOError):
        listener.recv(100)  # nothing was sent after close


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "60000000"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    env: dict[str, str], interval: float | None
) -> None:
    assert Notifier(env).watchdog_interval == interval
