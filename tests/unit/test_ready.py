"""Ready lists: order, requeue merging, byte counts, priorities."""

from collections import deque

import pytest

from xivo_bus.broker.model.message import Entry
from xivo_bus.broker.model.ready import PriorityReady, SizedReady, requeue_into

from .roles_for_tests import message


def entries(*seqs: int, priority: int | None = None, size: int = 1) -> list[Entry]:
    return [Entry(message(b"x" * size, priority=priority), seq) for seq in seqs]


def seqs(ready) -> list[int]:
    return [entry.seq for entry in ready]


def test_requeue_goes_back_to_the_head_when_it_came_first():
    ready = deque(entries(5, 6))
    requeue_into(ready, entries(1, 3))
    assert seqs(ready) == [1, 3, 5, 6]


def test_requeue_merges_by_sequence_when_interleaved():
    ready = deque(entries(2, 4, 6))
    requeue_into(ready, entries(1, 3, 5))
    assert seqs(ready) == [1, 2, 3, 4, 5, 6]


def test_sized_ready_counts_body_bytes_both_ways():
    ready = SizedReady()
    ready.extend(entries(1, 2, size=10))
    ready.appendleft(entries(0, size=5)[0])
    assert ready.bytes == 25 and len(ready) == 3
    ready.popleft()
    assert ready.bytes == 20
    requeue_into(ready, entries(0, size=7))
    assert ready.bytes == 27 and seqs(ready) == [0, 1, 2]
    ready.clear()
    assert ready.bytes == 0 and not ready


def test_priority_ready_serves_highest_first_in_publish_order():
    ready = PriorityReady(max_priority=5)
    for entry in [
        *entries(1, priority=1),
        *entries(2, priority=9),  # above the max counts as the max
        *entries(3),  # none counts as 0
        *entries(4, priority=5),
        *entries(5, priority=1),
    ]:
        ready.append(entry)
    assert len(ready) == 5 and ready[0].seq == 2
    assert seqs(ready) == [2, 4, 1, 5, 3]
    assert [ready.popleft().seq for _ in range(5)] == [2, 4, 1, 5, 3]
    with pytest.raises(IndexError):
        ready.popleft()


def test_priority_ready_requeues_into_each_priority():
    ready = PriorityReady(max_priority=2)
    for entry in [*entries(3, priority=2), *entries(4, priority=0)]:
        ready.append(entry)
    ready.requeue([*entries(1, priority=2), *entries(2, priority=0, size=4)])
    assert seqs(ready) == [1, 3, 2, 4]
    assert ready.count == 4 and ready.bytes == 1 + 1 + 4 + 1
