"""Spool: the bounded, durable FIFO of batches, without InfluxDB.

Rules kept here: a real directory (tmp_path); a full or failing disk is a
replacement of the module's ``atomic_write`` that raises the errno a test names;
every assertion is on points and files, the spool's public counters. One test uses
real threads: a reader from another thread waits while ``Spool.lock`` is held (its
0.2 s join can only make that test pass more easily, never fail it wrongly).
"""

from __future__ import annotations

import errno
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from collector.base.fsutil import atomic_write
from collector.sink import spool as spool_module
from collector.sink.spool import (
    CORRUPT_DIR,
    REASON_CORRUPT,
    REASON_DISK,
    REASON_SPOOL_FULL,
    Spool,
    compress,
)


def batch(n: int, points: int = 2) -> list[str]:
    """``points`` lines, numbered after batch ``n``."""
    return [f"m,b={n} v={i} {i}" for i in range(points)]


def files(spool: Spool) -> list[str]:
    """The spool's batch files, by name."""
    return sorted(p.name for p in spool.directory.glob("*.lp.gz"))


def first_lines(spool: Spool) -> list[str]:
    """The lines of the oldest batch."""
    entry = spool.peek()
    assert entry is not None
    loaded = spool.load(entry)
    assert loaded is not None
    return loaded.lines


def failing_writes(monkeypatch: pytest.MonkeyPatch, code: int, times: int) -> Callable[[], int]:
    """The next ``times`` writes fail with ``code``; returns how many writes were tried."""
    tried = [0]

    def write(path: Path, data: bytes, mode: int = 0o600) -> None:
        tried[0] += 1
        if tried[0] <= times:
            raise OSError(code, "simulated")
        atomic_write(path, data, mode)

    monkeypatch.setattr(spool_module, "atomic_write", write)
    return lambda: tried[0]


def test_batches_come_back_oldest_first_and_go_once_removed(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    for n in range(3):
        assert spool.append(batch(n)) == 0
    assert (len(spool), spool.points) == (3, 6)
    for n in range(3):
        entry = spool.peek()
        assert entry is not None
        loaded = spool.load(entry)
        assert loaded is not None and loaded.lines == batch(n)
        assert loaded.body == compress(batch(n))  # the body a write sends, as stored
        spool.remove(entry)
        spool.remove(entry)  # settled twice: a no-op
    assert (len(spool), spool.points, spool.bytes, files(spool)) == (0, 0, 0, [])


def test_a_full_disk_evicts_the_oldest_batches_until_the_new_one_fits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    for n in range(3):
        spool.append(batch(n))
    tried = failing_writes(monkeypatch, errno.ENOSPC, times=2)
    assert spool.append(batch(3)) == 4
    assert tried() == 3
    assert spool.dropped == {REASON_DISK: 4}
    assert first_lines(spool) == batch(2)
    assert (len(spool), spool.points, len(files(spool))) == (2, 4, 2)


def test_a_full_disk_with_nothing_left_to_evict_drops_the_new_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    failing_writes(monkeypatch, errno.EDQUOT, times=5)
    assert spool.append(batch(0, points=3)) == 3
    assert spool.dropped == {REASON_DISK: 3} and len(spool) == 0


def test_another_disk_error_drops_the_new_batch_and_keeps_the_old_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(batch(0))
    failing_writes(monkeypatch, errno.EIO, times=1)
    assert spool.append(batch(1, points=3)) == 3
    assert spool.dropped == {REASON_DISK: 3}
    assert first_lines(spool) == batch(0) and len(spool) == 1


def test_the_bound_evicts_the_oldest_batches(tmp_path: Path) -> None:
    size = len(compress(batch(0)))
    spool = Spool(tmp_path, max_bytes=2 * size)
    for n in range(4):
        spool.append(batch(n))
    assert spool.dropped == {REASON_SPOOL_FULL: 4}
    assert first_lines(spool) == batch(2)
    assert spool.bytes <= 2 * size and len(files(spool)) == 2


def test_one_big_batch_evicts_as_many_as_it_needs(tmp_path: Path) -> None:
    size = len(compress(batch(0)))
    # A batch between one and two small ones in size: two must go to make room.
    points = next(p for p in range(3, 200) if len(compress(batch(9, p))) > size)
    assert len(compress(batch(9, points))) <= 2 * size
    spool = Spool(tmp_path, max_bytes=3 * size)
    for n in range(3):
        spool.append(batch(n))
    spool.append(batch(9, points))
    assert spool.dropped == {REASON_SPOOL_FULL: 4}
    assert first_lines(spool) == batch(2)
    assert (len(spool), spool.points) == (2, 2 + points) and spool.bytes <= 3 * size


def test_the_batch_being_sent_is_never_evicted(tmp_path: Path) -> None:
    size = len(compress(batch(0)))
    spool = Spool(tmp_path, max_bytes=2 * size)
    spool.append(batch(0))
    sending = spool.peek()
    assert sending is not None and spool.load(sending) is not None
    for n in range(1, 4):
        spool.append(batch(n))
    assert spool.peek() == sending  # pinned while its write is under way
    assert spool.dropped == {REASON_SPOOL_FULL: 4}
    spool.remove(sending)
    spool.append(batch(4))  # no longer pinned: the oldest goes again
    assert first_lines(spool) == batch(3)


def test_a_restart_finds_the_batches_in_order_and_clears_torn_writes(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    for n in range(12):  # past ten: the order is by number, not by name length
        spool.append(batch(n))
    (tmp_path / ".00000000000000000012-2.lp.gz.tmp").write_bytes(b"torn")
    again = Spool(tmp_path, max_bytes=1 << 20)
    assert (len(again), again.points, again.bytes) == (12, 24, spool.bytes)
    assert first_lines(again) == batch(0)
    assert not list(tmp_path.glob("*.tmp"))
    again.append(batch(12))
    assert files(again)[-1].startswith("00000000000000000012-")


def test_an_unreadable_file_is_moved_aside_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(batch(0, points=3))
    spool.append(batch(1))
    entry = spool.peek()
    assert entry is not None
    entry.path.write_bytes(b"not gzip")
    assert spool.load(entry) is None
    assert spool.dropped == {REASON_CORRUPT: 3}
    assert (tmp_path / CORRUPT_DIR / entry.path.name).read_bytes() == b"not gzip"
    assert first_lines(spool) == batch(1)
    assert (len(spool), spool.points) == (1, 2)


def test_drops_is_a_copy_the_writer_does_not_change(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=len(compress(batch(0))))
    spool.append(batch(0))
    spool.append(batch(1))
    seen = spool.drops()
    assert seen == {REASON_SPOOL_FULL: 2}
    spool.append(batch(2))
    assert seen == {REASON_SPOOL_FULL: 2} and spool.drops() == {REASON_SPOOL_FULL: 4}


def test_reads_from_another_thread_wait_for_a_change_under_way(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(batch(0))
    seen: list[object] = []
    readers = [
        threading.Thread(target=lambda: seen.append(spool.peek())),
        threading.Thread(target=lambda: seen.append(spool.drops())),
    ]
    with spool.lock:  # as a worker thread holds it while it changes the queue
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(timeout=0.2)
        assert seen == []  # both readers wait for the change to end
    for reader in readers:
        reader.join(timeout=10)
    assert sorted(map(str, seen)) == sorted(map(str, [spool.peek(), Counter()]))
