"""The replay sample: a bounded, uniform sample of past user sequences, kept on disk.

Fine-tuning only on the recent window forgets what older data taught; mixing in a sample of the
past counters that. The sample is a reservoir (Vitter's algorithm R) over *user sequences*: each
run offers the events it has not offered before, grouped by user, each group cut to its newest
``max_events`` events, so a replayed sequence still reads as a user's history. After ``n`` offers
every offered sequence is in the sample with the same probability ``capacity / n``, whatever the
window sizes were, and the file never holds more than ``capacity * max_events`` events.

The file is one JSON document replaced atomically; the random draws are seeded by (seed, number
of offers so far), so a resumed job makes the same choices as one that never stopped.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.checkpoint import write_json
from models.exceptions import ModelError

FORMAT = 1


class ReservoirError(ModelError):
    """The replay sample on disk cannot be read."""


@dataclass
class ReplayReservoir:
    path: Path
    capacity: int = 2000  # sequences
    max_events: int = 64  # per sequence
    seed: int = 0
    offered: int = 0  # sequences offered so far
    offered_until_ms: int = -1  # newest event ts offered so far; older events are never offered again
    sequences: list[list[dict]] = field(default_factory=list)

    @classmethod
    def open(
        cls, path: str | os.PathLike, capacity: int = 2000, max_events: int = 64, seed: int = 0
    ) -> ReplayReservoir:
        """The sample at ``path``, or an empty one. A smaller ``capacity`` than stored trims it uniformly."""
        path = Path(path)
        if not path.is_file():
            return cls(path, capacity, max_events, seed)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if raw.get("format") != FORMAT:
                raise ReservoirError(f"{path} has format {raw.get('format')}, expected {FORMAT}")
            sample = cls(path, capacity, max_events, int(raw["seed"]), int(raw["offered"]),
                         int(raw["offered_until_ms"]), raw["sequences"])  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ReservoirError(
                f"cannot read the replay sample {path} ({exc}); move it away to start afresh"
            ) from None
        if len(sample.sequences) > capacity:
            keep = np.random.default_rng([sample.seed, sample.offered]).choice(
                len(sample.sequences), capacity, replace=False
            )
            sample.sequences = [sample.sequences[i] for i in sorted(keep)]
        sample.sequences = [seq[-max_events:] for seq in sample.sequences]
        return sample

    def __len__(self) -> int:
        return len(self.sequences)

    def events(self) -> int:
        return sum(len(seq) for seq in self.sequences)

    def offer(self, events: Iterable[dict]) -> int:
        """Offer the events newer than anything offered before, as one sequence per user; returns how
        many sequences were offered."""
        by_user: dict[str, list[dict]] = defaultdict(list)
        newest = self.offered_until_ms
        for event in events:
            if event["ts"] > self.offered_until_ms:
                by_user[event["user_id"]].append(event)
                newest = max(newest, event["ts"])
        for user in sorted(by_user):
            sequence = sorted(by_user[user], key=lambda e: e["ts"])[-self.max_events :]
            if len(self.sequences) < self.capacity:
                self.sequences.append(sequence)
            else:
                slot = int(np.random.default_rng([self.seed, self.offered]).integers(0, self.offered + 1))
                if slot < self.capacity:
                    self.sequences[slot] = sequence
            self.offered += 1
        self.offered_until_ms = newest
        return len(by_user)

    def forget(self, users: Iterable[str]) -> int:
        """Drop every sequence of ``users`` (a ``forget`` event); returns how many were dropped."""
        gone = set(users)
        before = len(self.sequences)
        self.sequences = [seq for seq in self.sequences if seq[0]["user_id"] not in gone]
        return before - len(self.sequences)

    def sample(self, n_events: int, rng: np.random.Generator) -> list[list[dict]]:
        """Whole sequences drawn without replacement until about ``n_events`` events are reached."""
        picked, total = [], 0
        for index in rng.permutation(len(self.sequences)):
            if total >= n_events:
                break
            picked.append(self.sequences[index])
            total += len(self.sequences[index])
        return picked

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(
            self.path,
            {
                "format": FORMAT,
                "seed": self.seed,
                "offered": self.offered,
                "offered_until_ms": self.offered_until_ms,
                "capacity": self.capacity,
                "max_events": self.max_events,
                "sequences": self.sequences,
            },
        )
