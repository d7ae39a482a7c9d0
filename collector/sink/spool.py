"""On-disk queue of batches InfluxDB has not taken yet (blocking: call it from a thread).

One file per batch in ``<state.dir>/spool``, named ``<seq>-<points>.lp.gz``: the
batch's lines, gzip-compressed (the very body a write sends), so the name alone
tells how many points a file holds, even when its content is lost. A file is
written with :func:`~collector.base.fsutil.atomic_write`, so a crash mid-write loses
at most that batch; leftover temporary files are removed at start. Files are
replayed oldest first and survive restarts.

Nothing here kills the process: the bound in bytes evicts the oldest batches
(never the one being sent), a full disk evicts the oldest until the new batch
fits, and a file that cannot be read is moved to ``corrupt/``. Every point lost
on the way is counted once in :attr:`Spool.dropped`, by reason, and logged.

Threads: the sink runs one operation at a time in a worker thread (its
:class:`~collector.sink.backlog.Backlog` holds a lock around each), while the trio
thread reads :meth:`Spool.peek`, :meth:`Spool.drops`, ``bytes``, ``points`` and
``len()``. The queue and the counters change under :attr:`Spool.lock`, which
``peek`` and ``drops`` take too (a bare read of the deque could see it emptied
between its test and its index, and reading a Counter while a new reason is added
raises). ``bytes`` and ``points`` are single int reads, and ``len()`` one call on
the deque, safe without it: at worst one operation old.
"""

from __future__ import annotations

import errno
import os
import re
import threading
import zlib
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from collector.base.fsutil import atomic_write
from collector.base.logging import get_logger
from collector.sink import gzipbody

log = get_logger(__name__)

# Strict: 20 digits of sequence, a count with no leading zero and at most
# MAX_FILE_POINTS (influx.batch_size's bound). Any other name is not ours, or is
# damaged: moved to corrupt/ and never trusted for a count.
_NAME: Final = re.compile(r"(\d{20})-([1-9]\d{0,6})\.lp\.gz")
MAX_FILE_POINTS: Final = 1_000_000
SEQ_DIGITS: Final = 20
# Found at start past this sequence number, the files are numbered again from 0 (in
# order), so a name never outgrows SEQ_DIGITS (a 21-digit name would be ignored by a
# restart): 9 * 10**19 appends are left before that could happen.
SEQ_RENUMBER: Final = 10**19
CORRUPT_DIR: Final = "corrupt"

# Why points were dropped (the ``reason`` of a drop, one counter each).
REASON_SPOOL_FULL: Final = "spool_full"
REASON_DISK: Final = "disk_error"
REASON_CORRUPT: Final = "spool_corrupt"
REASON_BUFFER_FULL: Final = "buffer_full"

_SPACE_ERRORS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
_UNREADABLE: Final = (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError)


@dataclass(frozen=True)
class SpoolEntry:
    """One spooled batch."""

    seq: int
    points: int
    size: int
    path: Path


@dataclass(frozen=True)
class Spooled:
    """A spooled batch read back: its stored gzip body and its lines."""

    entry: SpoolEntry
    body: bytes
    lines: list[str]


def compress(lines: list[str]) -> bytes:
    """The gzip body of a batch."""
    return gzipbody.compress("\n".join(lines).encode())


def decompress(body: bytes) -> list[str]:
    """The lines of a gzip body; ValueError if it holds none."""
    text = gzipbody.decompress(body).decode()
    if not text:
        raise ValueError("no lines in it")
    return text.split("\n")


class Spool:
    """A bounded, durable FIFO of batches."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Held while the queue or the counters change, and by the trio thread's reads.
        self.lock = threading.Lock()
        self._entries: deque[SpoolEntry] = deque()
        self._pinned: int | None = None  # seq of the batch being sent: never evicted
        self._next_seq = 0
        self.bytes = 0
        self.points = 0
        self.dropped: Counter[str] = Counter()
        self.foreign_files = 0  # files with a name not ours, moved to corrupt/
        self._recover()

    def __len__(self) -> int:
        return len(self._entries)

    def _recover(self) -> None:
        found = []
        for path in self.directory.iterdir():
            if path.is_dir():
                continue  # corrupt/, or something of the operator's
            entry = _entry(path)
            if entry is not None:
                found.append(entry)
            elif path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)  # a write cut short by a crash
            else:
                self._set_aside(path)
        found.sort(key=lambda e: e.seq)
        if found and found[-1].seq >= SEQ_RENUMBER:
            found = self._renumber(found)
        for entry in found:
            self._add(entry)
        if found:
            log.info("spool_recovered", batches=len(found), points=self.points, bytes=self.bytes)

    def _set_aside(self, path: Path) -> None:
        """A file whose name is not a spool file's: to corrupt/, counted, its name not believed."""
        target = self.directory / CORRUPT_DIR / path.name
        try:
            target.parent.mkdir(exist_ok=True, mode=0o700)
            os.replace(path, target)
        except OSError as exc:
            log.error("spool_file_not_moved", file=str(path), error=str(exc))
            return
        self.foreign_files += 1
        log.error(
            "spool_file_unrecognised",
            file=str(path),
            moved_to=str(target),
            hint="not a name the spool writes (<20 digits>-<points>.lp.gz); "
            "its points are not counted",
        )

    def _renumber(self, entries: list[SpoolEntry]) -> list[SpoolEntry]:
        """Name ``entries`` (sorted) 0, 1, 2, ... in order. Each new number is at most the
        old one, so no rename lands on a file still waiting for its own, and a crash
        half-way leaves names that still sort in the right order."""
        out = []
        for seq, entry in enumerate(entries):
            path = self.directory / _name(seq, entry.points)
            if path != entry.path:
                os.replace(entry.path, path)
            out.append(SpoolEntry(seq, entry.points, entry.size, path))
        log.warning("spool_renumbered", batches=len(out))
        return out

    def _add(self, entry: SpoolEntry) -> None:
        with self.lock:
            self._entries.append(entry)
            self._next_seq = max(self._next_seq, entry.seq + 1)
            self.bytes += entry.size
            self.points += entry.points

    def _forget(self, entry: SpoolEntry) -> bool:
        with self.lock:
            try:
                self._entries.remove(entry)
            except ValueError:
                return False  # already gone (evicted or moved aside)
            self.bytes -= entry.size
            self.points -= entry.points
            if self._pinned == entry.seq:
                self._pinned = None
            return True

    def append(self, lines: list[str]) -> int:
        """Spool a batch; returns how many points had to be dropped (never raises OSError)."""
        before = self.dropped.total()
        body = compress(lines)
        seq = self._next_seq
        self._next_seq += 1
        path = self.directory / _name(seq, len(lines))
        while True:
            try:
                atomic_write(path, body)
                break
            except OSError as exc:
                victim = self._oldest_unpinned() if exc.errno in _SPACE_ERRORS else None
                if victim is None:
                    self._count(REASON_DISK, len(lines), file=path.name, error=str(exc))
                    return self.dropped.total() - before
                self._evict(victim, REASON_DISK, error=str(exc))
        self._add(SpoolEntry(seq, len(lines), len(body), path))
        self._enforce_bound()
        return self.dropped.total() - before

    def _oldest_unpinned(self) -> SpoolEntry | None:
        return next((e for e in self._entries if e.seq != self._pinned), None)

    def _evict(self, entry: SpoolEntry, reason: str, **why: str) -> None:
        if self._forget(entry):
            entry.path.unlink(missing_ok=True)
            self._count(reason, entry.points, file=entry.path.name, **why)

    def _count(self, reason: str, points: int, **details: str) -> None:
        with self.lock:
            self.dropped[reason] += points
        log.error(
            "points_dropped",
            reason=reason,
            points=points,
            **details,
            hint="InfluxDB has been unreachable for long, or the disk is full: "
            "fix the write path, free space or raise influx.spool_max_bytes",
        )

    def _enforce_bound(self) -> None:
        while self.bytes > self.max_bytes:
            victim = self._oldest_unpinned()
            if victim is None:
                return
            self._evict(victim, REASON_SPOOL_FULL, max_bytes=str(self.max_bytes))

    def peek(self) -> SpoolEntry | None:
        """The oldest batch, if any (safe from another thread than the one writing)."""
        with self.lock:
            return self._entries[0] if self._entries else None

    def drops(self) -> Counter[str]:
        """A copy of :attr:`dropped` (safe from another thread than the one writing)."""
        with self.lock:
            return Counter(self.dropped)

    def load(self, entry: SpoolEntry) -> Spooled | None:
        """Read ``entry`` and keep it from eviction until :meth:`remove`; None if unreadable
        (then it is moved to ``corrupt/``, named in the log and its points counted)."""
        try:
            body = entry.path.read_bytes()
            lines = decompress(body)
        except _UNREADABLE as exc:
            self._quarantine(entry, exc)
            return None
        self._pinned = entry.seq
        return Spooled(entry, body, lines)

    def _quarantine(self, entry: SpoolEntry, exc: BaseException) -> None:
        if not self._forget(entry):
            return
        target = self.directory / CORRUPT_DIR / entry.path.name
        try:
            target.parent.mkdir(exist_ok=True, mode=0o700)
            os.replace(entry.path, target)
        except OSError:
            entry.path.unlink(missing_ok=True)  # cannot keep it aside: at least not again
        with self.lock:
            self.dropped[REASON_CORRUPT] += entry.points
        log.error(
            "spool_file_unreadable",
            file=str(entry.path),
            moved_to=str(target),
            points=entry.points,
            error=f"{type(exc).__name__}: {exc}",
        )

    def remove(self, entry: SpoolEntry) -> None:
        """Forget ``entry`` (delivered or settled); a no-op if it is already gone."""
        if self._forget(entry):
            entry.path.unlink(missing_ok=True)
        if self._pinned == entry.seq:
            self._pinned = None


def _name(seq: int, points: int) -> str:
    return f"{seq:0{SEQ_DIGITS}d}-{points}.lp.gz"


def _entry(path: Path) -> SpoolEntry | None:
    """The entry a file's name describes; None unless the name is exactly a spool file's."""
    match = _NAME.fullmatch(path.name)
    if match is None or int(match[2]) > MAX_FILE_POINTS:
        return None
    return SpoolEntry(int(match[1]), int(match[2]), path.stat().st_size, path)
