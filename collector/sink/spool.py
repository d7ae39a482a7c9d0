"""On-disk queue of batches InfluxDB has not taken yet.

One file per batch in ``<state.dir>/spool``, named ``<seq>-<points>.lp.gz``: the
batch's lines, gzip-compressed (the very body a write sends). A file is written
to a temporary name, fsynced and renamed, so a crash mid-write loses at most
that batch and never corrupts the others; leftover temporary files are removed
at start. Files are replayed oldest first (by sequence number) and survive
restarts. The spool is bounded in bytes: past the bound the oldest batches are
deleted and their points counted as dropped, never silently.
"""

from __future__ import annotations

import gzip
import os
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from collector.logging import get_logger

log = get_logger(__name__)

_NAME: Final = re.compile(r"(\d{20})-(\d+)\.lp\.gz")
GZIP_LEVEL: Final = 1


@dataclass(frozen=True)
class SpoolEntry:
    """One spooled batch."""

    seq: int
    points: int
    size: int
    path: Path


def compress(lines: list[str]) -> bytes:
    """The gzip body of a batch."""
    return gzip.compress("\n".join(lines).encode(), compresslevel=GZIP_LEVEL)


def decompress(body: bytes) -> list[str]:
    """The lines of a gzip body."""
    return gzip.decompress(body).decode().split("\n")


class Spool:
    """A bounded, durable FIFO of batches."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._entries: deque[SpoolEntry] = deque()
        self.bytes = 0
        self.points = 0
        self._recover()

    def __len__(self) -> int:
        return len(self._entries)

    def _recover(self) -> None:
        found = []
        for path in self.directory.iterdir():
            match = _NAME.fullmatch(path.name)
            if match is None:
                if path.name.endswith(".tmp"):
                    path.unlink(missing_ok=True)  # a write cut short by a crash
                continue
            found.append(SpoolEntry(int(match[1]), int(match[2]), path.stat().st_size, path))
        for entry in sorted(found, key=lambda e: e.seq):
            self._add(entry)
        if found:
            log.info("spool_recovered", batches=len(found), points=self.points, bytes=self.bytes)

    def _add(self, entry: SpoolEntry) -> None:
        self._entries.append(entry)
        self.bytes += entry.size
        self.points += entry.points

    def append(self, lines: list[str]) -> int:
        """Spool a batch; returns how many points had to be dropped to stay in bounds."""
        seq = self._entries[-1].seq + 1 if self._entries else 0
        body = compress(lines)
        path = self.directory / f"{seq:020d}-{len(lines)}.lp.gz"
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        self._add(SpoolEntry(seq, len(lines), len(body), path))
        return self._enforce_bound()

    def _enforce_bound(self) -> int:
        dropped = 0
        while self.bytes > self.max_bytes and self._entries:
            entry = self._entries[0]
            self.remove(entry)
            dropped += entry.points
        if dropped:
            log.error(
                "spool_full_dropped_oldest",
                points=dropped,
                max_bytes=self.max_bytes,
                hint="InfluxDB has been unreachable for long; raise influx.spool_max_bytes "
                "or fix the write path",
            )
        return dropped

    def peek(self) -> SpoolEntry | None:
        """The oldest batch, if any."""
        return self._entries[0] if self._entries else None

    def read(self, entry: SpoolEntry) -> bytes:
        """The gzip body of ``entry``."""
        return entry.path.read_bytes()

    def remove(self, entry: SpoolEntry) -> None:
        """Forget ``entry`` (delivered, or dropped)."""
        if self._entries and self._entries[0] == entry:
            self._entries.popleft()
        else:
            self._entries.remove(entry)
        self.bytes -= entry.size
        self.points -= entry.points
        entry.path.unlink(missing_ok=True)
