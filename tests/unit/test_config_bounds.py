"""Every rejected value and its one-line message; every local problem at start is exit 2.

A value that would start and then misbehave (``timeout = inf`` waits forever on a
hung write, ``flush_interval = 1e308`` never flushes, ``url = "http://"`` has
nowhere to write) is refused when the file is read, in one line that names the key,
the allowed range and the value (a URL's userinfo masked).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from collector.app.commands import write_credentials
from collector.config import ConfigError, load_settings
from collector.gate.signing import ApiCredentials
from collector.keys import generate_master_key
from tests.servers import free_port

DURATION = "must be seconds from 0.01 s to 30 days"
REJECTED = [
    ("influx", "timeout = inf", f"influx.timeout: {DURATION}; got inf"),
    ("influx", "timeout = nan", f"influx.timeout: {DURATION}; got nan"),
    ("influx", "timeout = 0.001", f"influx.timeout: {DURATION}; got 0.001"),
    ("influx", "timeout = 2592001", f"influx.timeout: {DURATION}; got 2592001"),
    ("influx", "flush_interval = 1e308", f"influx.flush_interval: {DURATION}; got 1e+308"),
    ("influx", "flush_jitter = -1", f"influx.flush_jitter: {DURATION} (or 0); got -1"),
    ("influx", "spool_after = 0", f"influx.spool_after: {DURATION}; got 0"),
    (
        "accounts",
        "refresh_interval = 1e300",
        f"accounts.refresh_interval: {DURATION}; got 1e+300",
    ),
    (
        "accounts",
        "snapshot_interval = 0.001",
        f"accounts.snapshot_interval: {DURATION} (or 0); got 0.001",
    ),
    (
        "accounts",
        "key_activation_grace = -5",
        f"accounts.key_activation_grace: {DURATION} (or 0); got -5",
    ),
    (
        "accounts",
        "key_rotate_after = 8000000",
        "accounts.key_rotate_after: must be seconds from 0.01 s to 89 days; got 8000000",
    ),
    (
        "accounts",
        "snapshot_rate = inf",
        "accounts.snapshot_rate: Input should be less than or equal to 10000; got inf",
    ),
    ("http", "stall_seconds = inf", f"http.stall_seconds: {DURATION}; got inf"),
    (
        "influx",
        "batch_size = 1000000000000000000000000000000",
        "influx.batch_size: Input should be less than or equal to 1000000; "
        "got 1000000000000000000000000000000",
    ),
    (
        "influx",
        "buffer_limit = 100000000",
        "influx.buffer_limit: Input should be less than or equal to 10000000; got 100000000",
    ),
    (
        "influx",
        "spool_max_bytes = 100000000000000000",
        "influx.spool_max_bytes: Input should be less than or equal to 17592186044416; "
        "got 100000000000000000",
    ),
    (
        "gate",
        "max_connections_per_ip = 10000000",
        "gate.max_connections_per_ip: Input should be less than or equal to 1000000; got 10000000",
    ),
    ("influx", 'url = "http://"', "influx.url: needs a host after http://; got 'http://'"),
    (
        "influx",
        'url = "http://user:PASSWORD@"',
        "influx.url: needs a host after http://; got 'http://***@'",
    ),
    (
        "influx",
        'url = "ftp://user:PASSWORD@host"',
        "influx.url: must start with http:// or https://; got 'ftp://***@host'",
    ),
    (
        "gate",
        'rest_url = "https:///api/v4"',
        "gate.rest_url: needs a host after https://; got 'https:///api/v4'",
    ),
    ("gate", 'ws_url = "wss://"', "gate.ws_url: needs a host after wss://; got 'wss://'"),
    (
        "state",
        'dir = ""',
        "state.dir: must be an absolute path (e.g. /var/lib/gate-collector); got ''",
    ),
    (
        "state",
        'dir = "relative/state"',
        "state.dir: must be an absolute path (e.g. /var/lib/gate-collector); got 'relative/state'",
    ),
    (
        "gate",
        'source_addresses = ["not-an-ip"]',
        "gate.source_addresses: 'not-an-ip' is not an IP address (one of this host's, "
        "e.g. 10.0.0.5); got ['not-an-ip']",
    ),
]


@pytest.mark.parametrize(("section", "line", "message"), REJECTED)
def test_a_rejected_value_is_one_line_naming_key_range_and_value(
    tmp_path: Path, section: str, line: str, message: str
) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(f"[{section}]\n{line}\n")
    with pytest.raises(ConfigError) as refused:
        load_settings(config, {})
    assert str(refused.value) == f"{config}: {message}"
    assert "PASSWORD" not in str(refused.value)


def test_the_bounds_themselves_are_accepted(tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(
        "[influx]\ntimeout = 0.01\nflush_interval = 2592000\nflush_jitter = 0\n"
        "batch_size = 1000000\n[accounts]\nsnapshot_interval = 0\n"
    )
    influx = load_settings(config, {}).influx
    assert (influx.timeout, influx.flush_interval, influx.batch_size) == (0.01, 2592000, 1000000)


# -- local problems at start: exit 2, one line ---------------------------------------


def start(tmp_path: Path, config: Path) -> tuple[int, list[str]]:
    """``gate-collector run --config CONFIG``: (exit code, stderr lines); never a traceback."""
    if not (tmp_path / "creds").exists():
        write_credentials(tmp_path / "creds", ApiCredentials("k" * 32, "s" * 64))
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GATE_", "INFLUX_"))}
    environ.update(
        CREDENTIALS_DIRECTORY=str(tmp_path / "creds"),
        GATE_COLLECTOR_MASTER_KEY=generate_master_key(),
    )
    result = subprocess.run(
        [sys.executable, "-m", "collector.app.cli", "run", "--config", str(config)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,  # a FIFO as --config used to hang here
        check=False,
    )
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    return result.returncode, result.stderr.strip().splitlines()


def config_file(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "collector.toml"
    config.write_text(
        '[gate]\nrest_url = "http://127.0.0.1:1/api/v4"\nws_url = "ws://127.0.0.1:1/ws"\n'
        f"{extra}"
        f'[state]\ndir = "{tmp_path / "state"}"\n'
        f'[influx]\nurl = "http://127.0.0.1:{free_port()}"\n'
    )
    return config


def test_a_busy_http_port_is_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = config_file(tmp_path)
        config.write_text(config.read_text() + f'[http]\nlisten = "127.0.0.1:{port}"\n')
        code, lines = start(tmp_path, config)
    assert (code, len(lines)) == (2, 1)
    assert lines[0].startswith(f"gate-collector: cannot listen on http.listen = '127.0.0.1:{port}'")


def test_an_empty_credential_file_is_exit_2(tmp_path: Path) -> None:
    config = config_file(tmp_path)
    write_credentials(tmp_path / "creds", ApiCredentials("k" * 32, "s" * 64))
    (tmp_path / "creds" / "gate-api-key").write_text("\n")
    code, lines = start(tmp_path, config)
    assert (code, lines) == (
        2,
        [
            f"gate-collector: credential file {tmp_path}/creds/gate-api-key is empty; "
            "write the bare value into it"
        ],
    )


def test_a_config_that_is_not_utf8_is_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_bytes('[influx]\nurl = "http://x"\n'.encode("utf-16"))
    code, lines = start(tmp_path, config)
    assert (code, lines) == (
        2,
        [
            f"gate-collector: config file {config} is not UTF-8 text "
            "(invalid start byte at byte 0); save it as UTF-8"
        ],
    )


def test_a_fifo_as_config_is_exit_2_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "collector.toml"
    os.mkfifo(fifo)
    code, lines = start(tmp_path, fifo)
    assert (code, lines) == (
        2,
        [f"gate-collector: --config {fifo} is not a regular file (a FIFO, a device?); pass a file"],
    )


def test_a_source_address_not_of_this_host_is_exit_2(tmp_path: Path) -> None:
    config = config_file(tmp_path, 'source_addresses = ["192.0.2.77"]\n')  # TEST-NET-1
    code, lines = start(tmp_path, config)
    assert (code, lines) == (
        2,
        [
            "gate-collector: gate.source_addresses: 192.0.2.77 is not an address of this host "
            "(Cannot assign requested address); list only this host's IPs (ip -br addr)"
        ],
    )


@pytest.mark.parametrize(
    ("content", "why"),
    [(b"\xff\xfe garbage", "not UTF-8 text"), (b"not-an-id\n", "'not-an-id' is not 8 hex digits")],
)
def test_a_damaged_instance_id_is_exit_2_naming_the_file(
    tmp_path: Path, content: bytes, why: str
) -> None:
    config = config_file(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "instance-id").write_bytes(content)
    code, lines = start(tmp_path, config)
    assert (code, lines) == (
        2,
        [
            f"gate-collector: {tmp_path}/state/instance-id is damaged ({why}): it holds this "
            "installation's id, which names its keys on Gate; restore it, or delete it to start "
            "with a new id (keys named with the old one are then yours to delete on Gate)"
        ],
    )
