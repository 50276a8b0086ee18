"""The fair share of the queue's runs a ``serve`` worker takes (replicator.workers.fair_share)."""

from __future__ import annotations

import itertools
import random

from replicator.workers import fair_share


def test_one_more_than_an_even_share() -> None:
    assert fair_share(0, 3) == 1
    assert fair_share(2, 3) == 2
    assert fair_share(6, 3) == 3
    assert fair_share(8, 3) == 4
    assert fair_share(5, 1) == 6  # alone: everything
    assert fair_share(3, 0) == 4  # no heartbeat seen yet: as if alone


def _deal(jobs: int, workers: int, order: list[int]) -> list[int]:
    """Workers asking in ``order`` (repeating) take jobs while below their share."""
    held = [0] * workers
    for who in itertools.islice(itertools.cycle(order), jobs * workers * 4):
        if sum(held) == jobs:
            break
        if held[who] < fair_share(sum(held), workers):
            held[who] += 1
    return held


def test_nine_jobs_on_three_workers_never_put_more_than_four_on_one() -> None:
    rng = random.Random(3)
    for _ in range(500):
        # A greedy worker asks many times in a row before the others look.
        order = [rng.randrange(3) for _ in range(rng.randrange(1, 30))]
        held = _deal(9, 3, order)
        assert max(held) <= 4, (order, held)
        if set(order) == {0, 1, 2}:
            assert sum(held) == 9, (order, held)  # nobody is left waiting


def test_a_greedy_first_worker_leaves_two_thirds_to_the_others() -> None:
    assert _deal(9, 3, [0] * 9 + [1] * 9 + [2] * 9) == [2, 3, 4]
    assert _deal(9, 3, [0, 1, 2]) == [3, 3, 3]
