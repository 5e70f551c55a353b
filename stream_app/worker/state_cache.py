"""Decoded user states of the users this worker served last, so their next batch skips the decode.

Decoding a stored state (its window of recent events, its seen items) was the largest single cost
of the click path: about a quarter of ``process_batch`` on MovieLens-shaped states. A state enters
the cache only once its write is in the local store and acknowledged by the changelog, so an entry
always equals what the table holds. A batch takes its users' entries out while it works on them
(``take``) and puts the new states back after its write (``put``): a batch that fails leaves none
of its users cached. Partitions this worker stops owning are dropped (another worker may move their
users on), and a batch that overlapped such a change does not put its states back.
"""

from __future__ import annotations

from collections.abc import Iterable

from stream_app.worker.state_codec import UserState


class StateCache:
    """At most ``capacity`` users' states, least recently used evicted first; 0 caches nothing."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: dict[str, tuple[int, UserState]] = {}  # insertion order = recency
        self.generation = 0  # moves on whenever partitions are dropped

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, user_id: str) -> UserState | None:
        """The user's cached state, removed from the cache (the caller now owns it), or None."""
        entry = self._entries.pop(user_id, None)
        return None if entry is None else entry[1]

    def put(self, states: Iterable[tuple[str, int, UserState | None]], generation: int) -> None:
        """``(user_id, partition, state)`` as just written (None: deleted), unless partitions were
        dropped since ``generation`` was read."""
        if generation != self.generation or not self.capacity:
            return
        entries = self._entries
        for user_id, partition, state in states:
            entries.pop(user_id, None)
            if state is not None:
                entries[user_id] = (partition, state)
        for _ in range(len(entries) - self.capacity):
            del entries[next(iter(entries))]

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        self.generation += 1
        self._entries = {user: entry for user, entry in self._entries.items() if entry[0] not in gone}
