"""Cold start: trending items by exponentially decayed popularity, on the event-time clock.

Every applied event adds 1 to its item; all scores decay with a half-life, measured in event time
so a replay ranks the same as the live stream did. Each worker counts the events of its partitions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np


class Trending:
    def __init__(self, half_life_s: float) -> None:
        self._rate = math.log(2) / (half_life_s * 1000.0)  # per millisecond
        self._slot: dict[str, int] = {}
        self._ids: list[str] = []
        self._scores = np.zeros(0, dtype=np.float64)
        self.clock_ms: int | None = None

    def add(self, item_ids: Sequence[str], ts_ms: Sequence[int]) -> None:
        """Count one event per (item, ts); older-than-clock events count decayed to the clock."""
        if not item_ids:
            return
        newest = max(ts_ms)
        if self.clock_ms is None:
            self.clock_ms = newest
        elif newest > self.clock_ms:
            self._scores *= math.exp(-self._rate * (newest - self.clock_ms))
            self.clock_ms = newest
        slots = np.fromiter((self._slot_of(item) for item in item_ids), dtype=np.int64, count=len(item_ids))
        weights = np.exp(-self._rate * (self.clock_ms - np.asarray(ts_ms, dtype=np.float64)))
        np.add.at(self._scores, slots, weights)

    def _slot_of(self, item_id: str) -> int:
        slot = self._slot.get(item_id)
        if slot is None:
            slot = self._slot[item_id] = len(self._ids)
            self._ids.append(item_id)
            if slot >= len(self._scores):
                self._scores = np.concatenate([self._scores, np.zeros(max(64, len(self._scores)))])
        return slot

    def top(
        self, k: int, exclude: Iterable[str] = (), allowed: Callable[[str], bool] | None = None
    ) -> list[tuple[str, float]]:
        """Up to ``k`` (item_id, decayed count), most popular first."""
        skip = set(exclude)
        n = len(self._ids)
        order = np.argsort(-self._scores[:n], kind="stable")
        out: list[tuple[str, float]] = []
        for slot in order:
            item = self._ids[slot]
            if item in skip or (allowed is not None and not allowed(item)):
                continue
            out.append((item, float(self._scores[slot])))
            if len(out) == k:
                break
        return out
