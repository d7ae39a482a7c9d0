"""The on-disk spool: durable, ordered, bounded, crash-safe."""

from __future__ import annotations

import gzip
import stat
from pathlib import Path

from structlog.testing import capture_logs

from collector.sink.spool import REASON_CORRUPT, REASON_SPOOL_FULL, Spool, Spooled, SpoolEntry


def lines(n: int, start: int = 0) -> list[str]:
    return [f"m,k=v f={i}i {i}" for i in range(start, start + n)]


def load(spool: Spool, entry: SpoolEntry | None) -> Spooled:
    assert entry is not None
    loaded = spool.load(entry)
    assert loaded is not None
    return loaded


def test_batches_come_back_oldest_first_and_survive_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**9)
    spool.append(lines(3))
    spool.append(lines(2, start=3))
    reopened = Spool(tmp_path, max_bytes=10**9)
    assert (len(reopened), reopened.points) == (2, 5)
    first = load(reopened, reopened.peek())
    assert first.lines == lines(3)
    reopened.remove(first.entry)
    second = load(reopened, reopened.peek())
    assert second.lines == lines(2, start=3)
    assert gzip.decompress(second.body) == "\n".join(lines(2, start=3)).encode()
    reopened.remove(second.entry)
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
    assert spool.dropped == {REASON_SPOOL_FULL: 200}
    assert load(spool, spool.peek()).lines == lines(100, start=200)


def test_sequence_continues_after_restart(tmp_path: Path) -> None:
    Spool(tmp_path, max_bytes=10**9).append(lines(1))
    spool = Spool(tmp_path, max_bytes=10**9)
    spool.append(lines(1, start=1))
    seqs = sorted(p.name for p in tmp_path.iterdir())
    assert seqs == ["00000000000000000000-1.lp.gz", "00000000000000000001-1.lp.gz"]


def test_the_batch_being_sent_is_never_evicted(tmp_path: Path) -> None:
    probe = Spool(tmp_path / "probe", max_bytes=10**9)
    probe.append(lines(100))
    spool = Spool(tmp_path / "real", max_bytes=int(probe.bytes * 2.5))
    spool.append(lines(100))
    sending = load(spool, spool.peek())
    assert spool.append(lines(100, start=100)) == 0
    assert spool.append(lines(100, start=200)) == 100  # the oldest is being sent: the next goes
    spool.remove(sending.entry)  # delivered: no "not in deque", no second count
    assert spool.dropped == {REASON_SPOOL_FULL: 100}
    assert load(spool, spool.peek()).lines == lines(100, start=200)
    spool.remove(sending.entry)  # twice is harmless too
    assert (len(spool), spool.points) == (1, 100)


def test_unreadable_files_are_moved_aside_named_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**9)
    for i in range(5):
        spool.append(lines(10, start=10 * i))
    names = sorted(p.name for p in tmp_path.iterdir())
    (tmp_path / names[1]).write_bytes(b"\x1f\x8b garbage, not gzip at all")
    full = (tmp_path / names[2]).read_bytes()
    (tmp_path / names[2]).write_bytes(full[: len(full) // 2])  # truncated
    (tmp_path / names[3]).write_bytes(b"")  # empty
    reopened = Spool(tmp_path, max_bytes=10**9)
    delivered = []
    with capture_logs() as logs:
        while (entry := reopened.peek()) is not None:
            loaded = reopened.load(entry)
            if loaded is not None:
                delivered.extend(loaded.lines)
                reopened.remove(entry)
    assert delivered == lines(10) + lines(10, start=40)
    assert reopened.dropped == {REASON_CORRUPT: 30}
    named = [e["file"] for e in logs if e["event"] == "spool_file_unreadable"]
    assert sorted(Path(f).name for f in named) == names[1:4]
    assert sorted(p.name for p in (tmp_path / "corrupt").iterdir()) == names[1:4]
    assert (reopened.bytes, reopened.points) == (0, 0)
