"""The pure batcher: cut by size and on a tick, bounded memory, the oldest overflow."""

from __future__ import annotations

from collector.sink.batcher import Batcher


def lines(n: int, start: int = 0) -> list[str]:
    return [f"m f={i}i {i}" for i in range(start, start + n)]


def test_a_full_batch_is_cut_at_once_and_the_rest_on_a_tick() -> None:
    batcher = Batcher(batch_size=4, buffer_limit=100)
    assert batcher.add(lines(3)) is False
    assert batcher.batches == 0
    assert batcher.add(lines(6, start=3)) is True
    assert batcher.batches == 2 and batcher.points == 9
    assert batcher.next() == lines(4)
    assert batcher.next() == lines(4, start=4)
    assert batcher.next() is None
    batcher.add(lines(2, start=9))
    assert batcher.cut() is True and batcher.cut() is False
    assert batcher.next() == lines(3, start=8)


def test_past_the_bound_the_oldest_batches_overflow() -> None:
    batcher = Batcher(batch_size=10, buffer_limit=25)
    for i in range(5):
        batcher.add(lines(10, start=10 * i))
    out = batcher.overflow()
    assert out == [lines(10), lines(10, start=10), lines(10, start=20)]
    assert batcher.points == 20
    assert batcher.next() == lines(10, start=30)


def test_points_in_flight_count_against_the_bound() -> None:
    batcher = Batcher(batch_size=10, buffer_limit=25)
    batcher.add(lines(20))
    assert batcher.overflow(held_elsewhere=0) == []
    assert batcher.overflow(held_elsewhere=10) == [lines(10)]


def test_a_batch_put_back_comes_first_and_drain_takes_all_in_order() -> None:
    batcher = Batcher(batch_size=2, buffer_limit=100)
    batcher.add(lines(4))
    first = batcher.next()
    assert first is not None
    batcher.add(lines(1, start=4))
    batcher.put_back(first)
    assert batcher.drain() == [lines(2), lines(2, start=2), lines(1, start=4)]
    assert batcher.points == 0


def test_exactly_a_batch_size_of_lines_is_cut_at_once() -> None:
    batcher = Batcher(batch_size=4, buffer_limit=100)
    assert batcher.add(lines(4)) is True
    assert (batcher.batches, batcher.points) == (1, 4)


def test_points_count_what_next_takes_and_put_back_returns() -> None:
    batcher = Batcher(batch_size=2, buffer_limit=100)
    batcher.add(lines(5))
    assert batcher.points == 5
    first = batcher.next()
    assert first is not None
    assert batcher.points == 3
    batcher.put_back(first)
    assert batcher.points == 5


def test_exactly_at_the_bound_nothing_overflows() -> None:
    batcher = Batcher(batch_size=10, buffer_limit=20)
    batcher.add(lines(20))
    assert batcher.overflow() == []
    assert batcher.overflow(held_elsewhere=1) == [lines(10)]


def test_pending_lines_count_against_the_bound() -> None:
    batcher = Batcher(batch_size=10, buffer_limit=25)
    batcher.add(lines(20))
    batcher.add(lines(5, start=20))
    assert batcher.overflow() == []
    batcher.add(lines(1, start=25))
    assert batcher.overflow() == [lines(10)]
    assert batcher.points == 16


def test_a_tick_counts_the_cut_lines_beside_the_queued_ones() -> None:
    batcher = Batcher(batch_size=4, buffer_limit=100)
    batcher.add(lines(6))
    assert (batcher.batches, batcher.points) == (1, 6)
    assert batcher.cut() is True
    assert (batcher.batches, batcher.points) == (2, 6)
    assert batcher.drain() == [lines(4), lines(2, start=4)]
    assert batcher.points == 0


def test_a_smaller_batch_size_cuts_the_pending_lines_into_batches_of_that_size() -> None:
    batcher = Batcher(batch_size=4, buffer_limit=100)
    batcher.add(lines(3))
    batcher.batch_size = 2  # a reload (SinkWriter.retarget) with pending lines
    assert batcher.cut() is True
    assert batcher.drain() == [lines(2), lines(1, start=2)]
