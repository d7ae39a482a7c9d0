"""Spool file names are parsed strictly: a name the spool did not write is set aside,
never trusted for a count, and sequence numbers cannot outgrow the names."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.sink.spool import CORRUPT_DIR, Spool, compress


def lines(n: int, start: int = 0) -> list[str]:
    return [f"m,k=v f={i}i {i}" for i in range(start, start + n)]


@pytest.mark.parametrize(
    "name",
    [
        "00000000000000000001-99999999999.lp.gz",  # a count no batch can hold
        "00000000000000000001-0.lp.gz",
        "00000000000000000001-007.lp.gz",
        "1-5.lp.gz",
        "000000000000000000001-5.lp.gz",  # 21 digits
        "00000000000000000001-5.lp",
        "notes.txt",
    ],
)
def test_a_name_the_spool_did_not_write_goes_to_corrupt_and_counts_nothing(
    tmp_path: Path, name: str
) -> None:
    (tmp_path / name).write_bytes(compress(lines(5)))
    spool = Spool(tmp_path, max_bytes=10**9)
    assert (len(spool), spool.points, spool.dropped.total()) == (0, 0, 0)
    assert spool.foreign_files == 1
    assert (tmp_path / CORRUPT_DIR / name).exists()
    again = Spool(tmp_path, max_bytes=10**9)  # counted once: it is out of the way now
    assert again.foreign_files == 0


def test_a_huge_sequence_is_renumbered_so_new_files_survive_a_restart(tmp_path: Path) -> None:
    (tmp_path / "99999999999999999999-3.lp.gz").write_bytes(compress(lines(3)))
    (tmp_path / "99999999999999999998-2.lp.gz").write_bytes(compress(lines(2, start=3)))
    spool = Spool(tmp_path, max_bytes=10**9)
    spool.append(lines(4, start=5))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "00000000000000000000-2.lp.gz",
        "00000000000000000001-3.lp.gz",
        "00000000000000000002-4.lp.gz",
    ]
    reopened = Spool(tmp_path, max_bytes=10**9)
    assert (len(reopened), reopened.points) == (3, 9)
    order = []
    while (entry := reopened.peek()) is not None:
        loaded = reopened.load(entry)
        assert loaded is not None
        order.append(loaded.lines[0])
        reopened.remove(entry)
    assert order == [lines(2, start=3)[0], lines(3)[0], lines(4, start=5)[0]]
