"""Offsets of the events topic as the worker receives them: a jump means records never reached it.

Our producers neither compact the events topic nor write it in transactions, so within a partition
the worker should see every offset, in order (redeliveries below the next expected offset, after a
restart or rebalance, are normal and dropped by dedupe). Faust's consumer was seen to skip runs of
offsets after a restart onto a backlog (the kill -9 test in tests/stream_app/worker), and the commit
then moves past them; the worker logs every such jump and counts the offsets, so no loss is silent.
A transactional producer's commit markers also take offsets and would show here as jumps of one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class OffsetTracker:
    """The next offset expected per (topic, partition), and the offsets jumped over."""

    def __init__(self) -> None:
        self._next: dict[tuple[str, int], int] = {}

    def knows(self, topic: str, partition: int) -> bool:
        """Whether an offset of this partition was received since it was (re)assigned."""
        return (topic, partition) in self._next

    def observe(self, topic: str, partition: int, offset: int) -> range:
        """Record a received offset; returns the offsets skipped right before it (usually empty)."""
        key = (topic, partition)
        expected = self._next.get(key)
        if expected is None or offset >= expected:
            self._next[key] = offset + 1
        return range(expected, offset) if expected is not None and offset > expected else range(0)

    def forget(self, partitions: Iterable[Any]) -> None:
        """Partitions this worker no longer owns: another worker may move them on meanwhile."""
        for tp in partitions:
            self._next.pop((tp.topic, tp.partition), None)
