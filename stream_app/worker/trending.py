"""Cold start: trending items by exponentially decayed popularity on the event-time clock, and the list
a user without a model state gets from it.

Every applied event adds 1 to its item; all counts decay with a half-life measured in event time, so
a replay ranks the same as the live stream did. A worker counts the events of its partitions, kept
per partition of the events topic: each partition's counts are stored (``snapshot``/``load``; the
worker writes them to a table of their own, whose changelog brings them back after a restart and
hands them to whichever worker gets the partition) and dropped when the partition goes.

The cold-start list (``order``) ranks every item of the serving index: items the stream counted by
their decayed count, then the others by the bundle's item popularity (its training events), then by
row. So a fresh worker, or one restarted before any event, still answers with as many items as
the catalog allows.

Counts are kept unnormalised: an event at ``ts`` adds ``exp(rate * (ts - base))``, and the decayed
count at the clock is that times ``exp(-rate * (clock - base))``. Moving the clock touches no array;
the base moves (one multiplication of each array) only before the weights would overflow.

Snapshot layout (little-endian): ``u8`` version (1), ``i64`` clock (epoch ms), ``u32`` n,
``f64[n]`` decayed counts at the clock, ``u32`` size and the UTF-8 item ids joined by NUL.
"""

from __future__ import annotations

import math
import struct
import threading
from collections.abc import Iterable, Sequence

import numpy as np

from stream_app.worker.item_index import ItemIndex
from stream_app.worker.thread_lock import locked

SNAPSHOT_VERSION = 1
SNAPSHOT_ITEMS = 10_000  # most items a partition's snapshot keeps (the most counted)
_HEAD = struct.Struct("<BqI")
_U32 = struct.Struct("<I")
_MAX_EXPONENT = 600.0  # exp(600) ~ 1e260: room for counts below float64's 1e308


class Trending:
    def __init__(self, half_life_s: float) -> None:
        self._rate = math.log(2) / (half_life_s * 1000.0)  # per millisecond
        self._slot: dict[str, int] = {}
        self._ids: list[str] = []
        self._counts: dict[int, np.ndarray] = {}  # partition -> unnormalised count per slot
        self._total = np.zeros(0, dtype=np.float64)
        self._base_ms: int | None = None
        self.clock_ms: int | None = None
        self.changed: set[int] = set()  # partitions counted since their last snapshot
        self.version = 0  # moves on with every change (``order`` caches by it)
        self._rows: tuple[object, np.ndarray] = (None, np.zeros(0, dtype=np.int64))
        self._order: tuple[tuple, np.ndarray, np.ndarray] | None = None
        self._lock = threading.Lock()  # batches count in the batch thread; queries read on the event loop

    @locked
    def add(self, item_ids: Sequence[str], ts_ms: Sequence[int], partitions: Sequence[int]) -> None:
        """Count one event per (item, ts, events-topic partition)."""
        if not item_ids:
            return
        newest = max(ts_ms)
        self.clock_ms = newest if self.clock_ms is None else max(self.clock_ms, newest)
        self._rebase(newest)
        slots = np.fromiter(map(self._slot_of, item_ids), dtype=np.int64, count=len(item_ids))
        weights = np.exp(self._rate * (np.asarray(ts_ms, dtype=np.float64) - self._base_ms))
        parts = np.asarray(partitions, dtype=np.int64)
        for partition in np.unique(parts).tolist():
            mine = parts == partition
            np.add.at(self._partition(partition), slots[mine], weights[mine])
            self.changed.add(partition)
        np.add.at(self._total, slots, weights)
        self.version += 1

    def _rebase(self, ts_ms: int) -> None:
        if self._base_ms is None:
            self._base_ms = ts_ms
        elif self._rate * (ts_ms - self._base_ms) > _MAX_EXPONENT:
            factor = math.exp(-self._rate * (ts_ms - self._base_ms))
            for counts in (*self._counts.values(), self._total):
                counts *= factor
            self._base_ms = ts_ms

    def _slot_of(self, item_id: str) -> int:
        slot = self._slot.get(item_id)
        if slot is None:
            slot = self._slot[item_id] = len(self._ids)
            self._ids.append(item_id)
            if slot >= len(self._total):
                grow = max(64, len(self._total))
                self._total = np.concatenate([self._total, np.zeros(grow)])
                for partition, counts in self._counts.items():
                    self._counts[partition] = np.concatenate([counts, np.zeros(grow)])
        return slot

    def _partition(self, partition: int) -> np.ndarray:
        counts = self._counts.get(partition)
        if counts is None:
            counts = self._counts[partition] = np.zeros(len(self._total))
        return counts

    def _scale(self) -> float:
        """Unnormalised counts times this are decayed counts at the clock."""
        if self.clock_ms is None or self._base_ms is None:
            return 0.0
        return math.exp(-self._rate * (self.clock_ms - self._base_ms))

    @locked
    def counts(self) -> dict[str, float]:
        """Every counted item's decayed count at the clock."""
        scale, n = self._scale(), len(self._ids)
        return {item: c for item, c in zip(self._ids, (self._total[:n] * scale).tolist(), strict=True) if c > 0}

    @locked
    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the counts of partitions this worker no longer owns."""
        for partition in partitions:
            counts = self._counts.pop(partition, None)
            self.changed.discard(partition)
            if counts is not None:
                self._total -= counts
                np.maximum(self._total, 0.0, out=self._total)
                self.version += 1

    @property
    @locked
    def partitions(self) -> set[int]:
        return set(self._counts)

    @locked
    def snapshot(self, partition: int) -> bytes:
        """The partition's counts, decayed to the clock, as bytes (layout in the module docstring)."""
        counts = self._counts.get(partition, np.zeros(0))[: len(self._ids)] * self._scale()
        keep = np.flatnonzero(counts > 0)
        if len(keep) > SNAPSHOT_ITEMS:
            keep = keep[np.argpartition(-counts[keep], SNAPSHOT_ITEMS)[:SNAPSHOT_ITEMS]]
        ids = "\0".join(self._ids[i] for i in keep.tolist()).encode("utf-8")
        clock = -1 if self.clock_ms is None else self.clock_ms
        head = _HEAD.pack(SNAPSHOT_VERSION, clock, len(keep))
        return b"".join([head, counts[keep].astype("<f8").tobytes(), _U32.pack(len(ids)), ids])

    @locked
    def load(self, partition: int, raw: bytes) -> int:
        """Add a partition's snapshot to its counts; returns how many items it held. ``ValueError`` when
        ``raw`` is not a snapshot."""
        try:
            version, clock, n = _HEAD.unpack_from(raw, 0)
            if version != SNAPSHOT_VERSION:
                raise ValueError(f"trending snapshot version {version} is unknown (knows {SNAPSHOT_VERSION})")
            counts = np.frombuffer(raw, dtype="<f8", count=n, offset=_HEAD.size).astype(np.float64)
            at = _HEAD.size + 8 * n
            (size,) = _U32.unpack_from(raw, at)
            ids = raw[at + _U32.size : at + _U32.size + size].decode("utf-8").split("\0") if n else []
        except (struct.error, UnicodeDecodeError) as exc:
            raise ValueError(f"corrupt trending snapshot: {exc}") from None
        if len(ids) != n or at + _U32.size + size != len(raw):
            raise ValueError(f"corrupt trending snapshot: {n} counts, {len(ids)} ids, {len(raw)} bytes")
        if not n:
            return 0
        self.clock_ms = clock if self.clock_ms is None else max(self.clock_ms, clock)
        self._rebase(clock)
        weights = counts * math.exp(self._rate * (clock - self._base_ms))
        slots = np.fromiter(map(self._slot_of, ids), dtype=np.int64, count=n)
        np.add.at(self._partition(partition), slots, weights)
        np.add.at(self._total, slots, weights)
        self.version += 1
        return n

    @locked
    def order(self, index: ItemIndex) -> tuple[np.ndarray, np.ndarray]:
        """(every row of ``index`` in cold-start order, each row's decayed count), cached until the
        counts or the index's rows change."""
        key = (self.version, index.token, len(index.ids))
        if self._order is not None and self._order[0] == key:
            return self._order[1], self._order[2]
        n = len(index.ids)
        row_counts = np.zeros(n)
        rows = self._rows_in(index)
        known = rows >= 0
        row_counts[rows[known]] = self._total[: len(rows)][known] * self._scale()
        popularity = index.popularity
        counted = np.flatnonzero(row_counts > 0)
        counted = counted[np.lexsort((counted, -popularity[counted], -row_counts[counted]))]
        rest = index.popularity_order()
        order = np.concatenate([counted, rest[row_counts[rest] == 0]])
        self._order = (key, order, row_counts)
        return order, row_counts

    def _rows_in(self, index: ItemIndex) -> np.ndarray:
        """Each slot's row in ``index`` (-1: not in it), extended as slots are added."""
        token, rows = self._rows
        if token is not index.token:
            rows = np.zeros(0, dtype=np.int64)
        if len(rows) < len(self._ids):
            rows = np.concatenate([rows, index.row_array(self._ids[len(rows) :])])
        self._rows = (index.token, rows)
        return rows


def cold_start(
    trending: Trending, index: ItemIndex, k: int, exclude: Sequence[int] = (), allowed: np.ndarray | None = None
) -> tuple[list[int], list[float]]:
    """The first ``k`` live rows of the cold-start list, minus the ``exclude`` rows (-1: none), among the
    ``allowed`` ones: (rows, decayed counts)."""
    order, counts = trending.order(index)
    usable = index.alive.copy() if allowed is None else index.alive & allowed
    rows = np.fromiter(exclude, dtype=np.int64)
    usable[rows[rows >= 0]] = False
    picked = order[usable[order]][:k]
    return picked.tolist(), counts[picked].tolist()
