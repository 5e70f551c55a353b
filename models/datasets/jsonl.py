"""Read and write events / items as JSON Lines (one compact JSON object per line, UTF-8).

Files ending in ``.gz`` are read and written gzip-compressed. ``load_event_columns`` loads an
events file into numpy arrays for training code that wants columns rather than dicts.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO

import numpy as np

from models.datasets.exceptions import DatasetError


def open_text(path: str | Path, mode: str = "r") -> IO[str]:
    """Text handle on ``path``, gzip-decoded/encoded when it ends in ``.gz``."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", encoding="utf-8")
    return path.open(mode, encoding="utf-8", newline="\n" if "w" in mode else None)


def read_jsonl(path: str | Path) -> Iterator[dict]:
    """Yield one dict per non-blank line; a malformed line raises ``DatasetError`` naming it."""
    try:
        with open_text(path) as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise DatasetError(f"{path}:{lineno}: expected a JSON object")
                yield record
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None


def write_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    """Write ``records`` one per line (compact, keys in given order); return how many were written."""
    count = 0
    with open_text(path, "w") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
            fh.write("\n")
            count += 1
    return count


def read_items(path: str | Path) -> dict[str, str]:
    """item_id -> text of an items JSONL file (a later line for the same id wins, as on a compacted topic)."""
    return {record["item_id"]: record.get("text", "") for record in read_jsonl(path)}


@dataclass(frozen=True)
class EventColumns:
    """An events file as parallel arrays (row i is event i, in file order).

    Strings are object arrays; ``rating`` is NaN where the event has none, ``text`` is None.
    """

    event_id: np.ndarray
    user_id: np.ndarray
    item_id: np.ndarray
    type: np.ndarray
    ts: np.ndarray  # int64 epoch ms
    rating: np.ndarray  # float32
    text: np.ndarray

    def before(self, ts: int) -> EventColumns:
        """The events older than ``ts`` (epoch ms)."""
        keep = self.ts < ts
        return EventColumns(**{f.name: getattr(self, f.name)[keep] for f in fields(self)})

    def __len__(self) -> int:
        return len(self.ts)


def events_to_columns(events: Iterable[dict]) -> EventColumns:
    """Column form of event dicts."""
    rows = list(events)

    def strings(key: str) -> np.ndarray:
        return np.array([e[key] for e in rows], dtype=object)

    return EventColumns(
        event_id=strings("event_id"),
        user_id=strings("user_id"),
        item_id=strings("item_id"),
        type=strings("type"),
        ts=np.array([e["ts"] for e in rows], dtype=np.int64),
        rating=np.array([e.get("rating", np.nan) for e in rows], dtype=np.float32),
        text=np.array([e.get("text") for e in rows], dtype=object),
    )


def load_event_columns(path: str | Path) -> EventColumns:
    """Column form of an events JSONL file."""
    try:
        return events_to_columns(read_jsonl(path))
    except KeyError as exc:
        raise DatasetError(f"{path}: an event lacks the field {exc}; is this an events file?") from None
