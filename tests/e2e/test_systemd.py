"""The systemd units: `systemd-analyze verify` says nothing, exposure is 2.0 or less."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).parents[2] / "deploy" / "systemd"
INSTALLED_PATH = "/usr/local/bin/gate-collector"

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is part of Debian's systemd"
)


def installed_copy(tmp_path: Path, name: str) -> Path:
    """The unit with ExecStart pointing at this checkout's gate-collector (verify checks it)."""
    text = (UNITS / name).read_text()
    exe = Path(sys.executable).parent / "gate-collector"
    assert INSTALLED_PATH in text
    target = tmp_path / name
    target.write_text(text.replace(INSTALLED_PATH, str(exe)))
    return target


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("name", "instance"),
    [
        ("gate-collector.service", "gate-collector.service"),
        ("gate-collector@.service", "gate-collector@0.service"),
    ],
)
def test_verify_prints_nothing(tmp_path: Path, name: str, instance: str) -> None:
    installed_copy(tmp_path, name)
    result = analyze("verify", f"./{instance}", cwd=tmp_path)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_verify_would_complain_about_a_broken_unit(tmp_path: Path) -> None:
    unit = installed_copy(tmp_path, "gate-collector.service")
    unit.write_text(unit.read_text().replace("Type=notify", "Type=notify\nWatchdogSecc=1"))
    result = analyze("verify", "./gate-collector.service", cwd=tmp_path)
    assert "WatchdogSecc" in result.stdout + result.stderr


@pytest.mark.parametrize("name", ["gate-collector.service", "gate-collector@.service"])
def test_exposure_is_two_or_less(tmp_path: Path, name: str) -> None:
    installed_copy(tmp_path, name)
    result = analyze("security", "--offline=yes", f"./{name}", cwd=tmp_path)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    assert float(match[1]) <= 2.0


@pytest.mark.parametrize("name", ["gate-collector.service", "gate-collector@.service"])
def test_units_carry_the_service_contract(name: str) -> None:
    text = (UNITS / name).read_text()
    for line in (
        "Type=notify",
        "Restart=on-failure",
        "DynamicUser=yes",
        "LoadCredentialEncrypted=gate-api-secret:",
        "LoadCredentialEncrypted=master-key:",
        "RestartPreventExitStatus=2",  # a config problem is not restarted in a loop
        "ExecReload=/bin/kill -HUP $MAINPID",  # SIGHUP reloads, it no longer kills
    ):
        assert line in text
    assert re.search(r"^WatchdogSec=\d+", text, re.M)
    assert re.search(r"^MemoryMax=\d+M$", text, re.M)  # from the sizing in RESULTS.md
    # InfluxDB's password or token may be absent (no auth, or the other API): a missing
    # credential file fails a start, so they come as drop-ins, each used alone.
    assert "LoadCredentialEncrypted=influx-" not in text

    assert re.search(r"^StateDirectory=gate-collector", text, re.M)
