"""The on-disk spool: durable, ordered, bounded, crash-safe."""

from __future__ import annotations

import stat
from pathlib import Path

from collector.sink.spool import Spool, decompress


def lines(n: int, start: int = 0) -> list[str]:
    return [f"m,k=v f={i}i {i}" for i in range(start, start + n)]


def test_batches_come_back_oldest_first_and_survive_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**9)
    spool.append(lines(3))
    spool.append(lines(2, start=3))
    reopened = Spool(tmp_path, max_bytes=10**9)
    assert (len(reopened), reopened.points) == (2, 5)
    first = reopened.peek()
    assert first is not None
    assert decompress(reopened.read(first)) == lines(3)
    reopened.remove(first)
    second = reopened.peek()
    assert second is not None
    assert decompress(reopened.read(second)) == lines(2, start=3)
    reopened.remove(second)
    assert reopened.peek() is None
    assert (reopened.bytes, reopened.points) == (0, 0)
    assert list(tmp_path.iterdir()) == []


def test_files_are_private(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=10**9)
    spool.append(lines(1))
    entry = spool.peek()
    assert entry is not None
    assert stat.S_IMODE(entry.path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700


def test_a_write_cut_short_by_a_crash_leaves_the_rest_intact(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**9)
    spool.append(lines(4))
    # What a crash between open() and rename() leaves behind.
    (tmp_path / "00000000000000000001-7.lp.gz.tmp").write_bytes(b"\x1f\x8b half")
    reopened = Spool(tmp_path, max_bytes=10**9)
    assert (len(reopened), reopened.points) == (1, 4)
    assert not list(tmp_path.glob("*.tmp"))


def test_past_the_bound_the_oldest_are_dropped_and_counted(tmp_path: Path) -> None:
    probe = Spool(tmp_path / "probe", max_bytes=10**9)
    probe.append(lines(100))
    one_batch = probe.bytes
    spool = Spool(tmp_path / "real", max_bytes=int(one_batch * 2.5))
    dropped = [spool.append(lines(100, start=100 * i)) for i in range(4)]
    assert dropped == [0, 0, 100, 100]
    assert spool.points == 200
    oldest = spool.peek()
    assert oldest is not None
    assert decompress(spool.read(oldest)) == lines(100, start=200)


def test_sequence_continues_after_restart(tmp_path: Path) -> None:
    Spool(tmp_path, max_bytes=10**9).append(lines(1))
    spool = Spool(tmp_path, max_bytes=10**9)
    spool.append(lines(1, start=1))
    seqs = sorted(p.name for p in tmp_path.iterdir())
    assert seqs == ["00000000000000000000-1.lp.gz", "00000000000000000001-1.lp.gz"]
