"""The one retry rhythm: the ceiling doubles from base to cap, the wait is its upper half."""

from __future__ import annotations

import random

import pytest

from collector.base.backoff import backoff_delay


class Edge(random.Random):
    """An rng whose uniform() gives one end of the range: the bounds, exactly."""

    def __init__(self, top: bool) -> None:
        super().__init__(0)
        self.top = top

    def uniform(self, a: float, b: float) -> float:
        return b if self.top else a


@pytest.mark.parametrize(
    ("failures", "ceiling"),
    [(0, 1.0), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (50, 8.0)],
)
def test_the_ceiling_doubles_up_to_the_cap_and_the_wait_is_its_upper_half(
    failures: int, ceiling: float
) -> None:
    assert backoff_delay(failures, 1.0, 8.0, Edge(top=True)) == ceiling
    assert backoff_delay(failures, 1.0, 8.0, Edge(top=False)) == ceiling / 2


def test_a_seeded_rng_gives_the_same_waits() -> None:
    first = [backoff_delay(n, 0.5, 30.0, random.Random(7)) for n in range(1, 10)]
    second = [backoff_delay(n, 0.5, 30.0, random.Random(7)) for n in range(1, 10)]
    assert first == second
    rng = random.Random(3)
    for n in range(1, 12):
        ceiling = min(30.0, 0.5 * 2 ** (n - 1))
        assert ceiling / 2 <= backoff_delay(n, 0.5, 30.0, rng) <= ceiling
