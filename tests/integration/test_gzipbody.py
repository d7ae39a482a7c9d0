"""Write bodies gzipped by ISA-L and by zlib land identically in the real servers."""

from __future__ import annotations

import gzip
import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from collector.sink import gzipbody
from tests.servers import InfluxServer, VictoriaMetrics, victoria_metrics

BACKENDS = ("isal", "zlib")


def lines(tag: str, count: int) -> list[str]:
    """Varied values (a body of equal lines would compress to nothing)."""
    return [
        f"gz_probe,backend={tag},n={i % 7} value={i * 1.25 + 0.5},u={i}i {1_700_000_000_000 + i}"
        for i in range(count)
    ]


def test_isal_is_the_backend_when_installed() -> None:
    pytest.importorskip("isal")  # dev installs it; this proves the try-import picks it
    assert gzipbody.BACKEND == "isal"


@pytest.mark.parametrize("backend", BACKENDS)
def test_both_backends_write_a_gzip_the_stdlib_reads(backend: str) -> None:
    data = "\n".join(lines(backend, 2000)).encode()
    body = gzipbody.compress(data, backend=backend)
    assert body[:2] == b"\x1f\x8b"
    assert gzip.decompress(body) == data
    assert gzipbody.decompress(body) == data
    assert len(body) < len(data) / 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_influxdb_takes_each_backend(influxdb: InfluxServer, backend: str) -> None:
    database = f"gz_{uuid.uuid4().hex[:10]}"
    influxdb.create_database(database)
    body = gzipbody.compress("\n".join(lines(backend, 3000)).encode(), backend=backend)
    response = httpx.post(
        f"{influxdb.url}/write",
        params={"db": database, "precision": "ms"},
        headers={"Content-Encoding": "gzip"},
        content=body,
        timeout=30,
    )
    assert response.status_code == 204, response.text
    result = influxdb.query("SELECT count(value), sum(u) FROM gz_probe", db=database)
    row = result["results"][0]["series"][0]["values"][0]  # type: ignore[index]
    assert row[1:] == [3000, sum(range(3000))]


@pytest.fixture(scope="module")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    with victoria_metrics(tmp_path_factory.mktemp("vm-gz")) as server:
        yield server


def vm_values(vm: VictoriaMetrics, backend: str) -> list[float]:
    response = httpx.get(
        f"{vm.url}/api/v1/export",
        params={"match[]": f'gz_probe_value{{backend="{backend}"}}'},
        timeout=30,
    )
    response.raise_for_status()
    values: list[float] = []
    for line in response.content.splitlines():
        if line.strip():
            values.extend(json.loads(line)["values"])
    return sorted(values)


@pytest.mark.parametrize("backend", BACKENDS)
def test_victoria_metrics_takes_each_backend(victoria: VictoriaMetrics, backend: str) -> None:
    body = gzipbody.compress("\n".join(lines(backend, 700)).encode(), backend=backend)
    response = httpx.post(
        f"{victoria.url}/api/v2/write",
        params={"org": "gate", "bucket": "gate", "precision": "ms"},
        headers={"Content-Encoding": "gzip"},
        content=body,
        timeout=30,
    )
    assert response.status_code == 204, response.text
    httpx.get(f"{victoria.url}/internal/force_flush", timeout=10)
    expected = sorted(i * 1.25 + 0.5 for i in range(700))
    deadline = time.monotonic() + 30  # VictoriaMetrics makes samples searchable in the background
    while vm_values(victoria, backend) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert vm_values(victoria, backend) == expected
