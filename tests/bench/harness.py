"""Shared pieces of the benchmarks: processes, CPU time, results files."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent.parent
RESULTS_DIR = Path(__file__).parent / "results"
RESULTS = Path(__file__).parent / "RESULTS.md"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its waited-for children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def schedstat(pid: int) -> tuple[float, float]:
    """Seconds the process's main thread ran on a CPU, and waited in the run queue for one."""
    on_cpu, waiting, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def rss_bytes(pid: int) -> int:
    """Resident set size of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class SimServer:
    """The benchmark simulator process."""

    process: subprocess.Popen[bytes]
    rest_url: str
    ws_url: str
    directory: Path
    stats_file: Path

    @property
    def keys(self) -> dict[str, list[str]]:
        data: dict[str, list[str]] = json.loads((self.directory / "keys.json").read_text())
        return data

    def burst_started(self, timeout: float = 120) -> float:
        """time.monotonic() of the first burst frame (waits for it)."""
        marker = self.directory / "burst-started"
        wait_until(marker.exists, timeout, interval=0.005)
        time.sleep(0.01)
        return float(marker.read_text())

    def stats(self) -> dict[str, Any]:
        """The simulator's counters right now (refreshed every 0.1 s; a busy one: slower)."""
        for _ in range(1000):
            try:
                data: dict[str, Any] = json.loads(self.stats_file.read_text())
                return data
            except (FileNotFoundError, json.JSONDecodeError):
                time.sleep(0.02)
        raise RuntimeError("no simulator stats")

    def stop(self) -> dict[str, Any]:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        stats: dict[str, Any] = json.loads(self.stats_file.read_text())
        return stats


@contextmanager
def sim_server(directory: Path, *args: str) -> Iterator[SimServer]:
    """Run tests/bench/simserver.py until the block ends."""
    directory.mkdir(parents=True, exist_ok=True)
    stats = directory / "sim-stats.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.bench.simserver",
            "--dir",
            str(directory),
            "--stats",
            str(stats),
            *args,
        ],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert process.stdout is not None
    ready = json.loads(process.stdout.readline())
    server = SimServer(process, ready["rest_url"], ready["ws_url"], directory, stats)
    try:
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def run_python(module: str, *args: str) -> dict[str, Any]:
    """Run ``python -m module args``; its last stdout line is a JSON result."""
    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def machine() -> str:
    """Cores, CPU model, Python, date: the line every result table starts with."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    return (
        f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}, {date}"
    )


def record(name: str, markdown: str) -> None:
    """Print a result section and keep it for RESULTS.md."""
    section = f"## {name}\n\n_{machine()}_\n\n{markdown.strip()}\n"
    print("\n" + section)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{name.lower().replace(' ', '-')}.md").write_text(section)
    sections = sorted(RESULTS_DIR.glob("*.md"))
    RESULTS.write_text(
        "# Benchmark results\n\nWritten by `make bench` (each section by its own "
        "benchmark, with the machine and date it ran on). Ratios are measured within "
        "one run; absolute numbers move with the machine's load.\n\n"
        + "\n".join(p.read_text() for p in sections)
    )


def wait_until(predicate: Any, timeout: float, interval: float = 0.1) -> float:
    """Poll until true; returns the time.monotonic() at which it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(interval)
    raise TimeoutError(f"not true after {timeout}s")


@contextmanager
def collector(
    directory: Path,
    sim: SimServer,
    toml: str,
    master_key: str,
    prefix: tuple[str, ...] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """``gate-collector run`` against ``sim`` with extra config ``toml``, until the block ends.

    ``prefix`` goes before the command (``("taskset", "-c", "1")`` pins it to one core).
    """
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "collector.toml"
    config.write_text(
        f'[gate]\nrest_url = "{sim.rest_url}"\nws_url = "{sim.ws_url}"\n{toml}\n'
        f'[state]\ndir = "{directory}/state"\n'
    )
    env = {
        **os.environ,
        "CREDENTIALS_DIRECTORY": str(sim.directory / "creds"),
        "GATE_COLLECTOR_MASTER_KEY": master_key,
    }
    with (directory / "collector.log").open("ab") as log:
        process = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-m",
                "collector.app.cli",
                "--log-level",
                "warning",
                "run",
                "--config",
                str(config),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _jiffies(fields: list[str], first: int, count: int) -> int:
    return sum(int(f) for f in fields[first : first + count])


def tree_cpu_seconds(root: int | None = None) -> float:
    """CPU of ``root`` (this process) and every live descendant, waited-for children included."""
    root = os.getpid() if root is None else root
    parents: dict[int, int] = {}
    cpu: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        cpu[pid] = _jiffies(fields, 11, 4)  # utime stime cutime cstime
    total, stack = cpu.get(root, 0), [root]
    while stack:
        parent = stack.pop()
        for pid, ppid in parents.items():
            if ppid == parent:
                total += cpu[pid]
                stack.append(pid)
    return total / TICKS


def machine_busy_seconds() -> float:
    """CPU time every core spent busy since boot (/proc/stat, all but idle and iowait)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(f) for f in fields[:8]]
    return (sum(values) - values[3] - values[4]) / TICKS


@dataclass
class Load:
    """The machine's other load over one benchmark: load average and others' CPU."""

    load_before: float
    busy_before: float
    ours_before: float
    wall_before: float

    @classmethod
    def now(cls) -> Load:
        return cls(os.getloadavg()[0], machine_busy_seconds(), tree_cpu_seconds(), time.monotonic())

    def describe(self) -> str:
        wall = max(time.monotonic() - self.wall_before, 1e-9)
        busy = machine_busy_seconds() - self.busy_before
        ours = tree_cpu_seconds() - self.ours_before
        others = max(busy - ours, 0.0) / wall
        return (
            f"Machine load over this benchmark: load average {self.load_before:.2f} before, "
            f"{os.getloadavg()[0]:.2f} after; other processes (not this benchmark's) used "
            f"{others:.2f} of {os.cpu_count()} cores on average over {wall:,.0f} s "
            f"(/proc/stat busy {busy / wall:.2f} cores, ours {ours / wall:.2f})."
        )
