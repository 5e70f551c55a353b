"""Training data: JSONL event/item files, converters for public data sets, and a synthetic generator.

Pure numpy/stdlib, no torch. Event dicts follow the ``Event`` contract
``{event_id, user_id, item_id, type, ts[, text][, rating]}``; item dicts are ``{item_id, text}``.
"""

from models.datasets.amazon import read_amazon
from models.datasets.exceptions import DatasetError
from models.datasets.jsonl import (
    EventColumns,
    events_to_columns,
    load_event_columns,
    read_items,
    read_jsonl,
    write_jsonl,
)
from models.datasets.movielens import read_movielens
from models.datasets.movielens_100k import read_movielens_100k
from models.datasets.records import Dataset, sort_events, truncate_text
from models.datasets.synthetic import StreamShape, generate

__all__ = [
    "Dataset",
    "DatasetError",
    "EventColumns",
    "StreamShape",
    "events_to_columns",
    "generate",
    "load_event_columns",
    "read_amazon",
    "read_items",
    "read_jsonl",
    "read_movielens",
    "read_movielens_100k",
    "sort_events",
    "truncate_text",
    "write_jsonl",
]
