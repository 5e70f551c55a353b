"""Fast decode + validation of raw record bytes, and encoding of output records.

Decoders are built once per type; decoding a record is one C call. Every failure is a
``ContractError`` whose ``reason`` is a short stable code (for dead-letter metrics) and whose
message says what was wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import numpy as np

from stream_app.contracts.float_json import DECIMALS, json_rows
from stream_app.contracts.records import Event, InterestVector, Item
from stream_app.exceptions import InterestStreamError


class ContractError(InterestStreamError):
    """Raw bytes are not a valid record of the expected contract."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_event_decoder = msgspec.json.Decoder(Event)
_item_decoder = msgspec.json.Decoder(Item)
_encoder = msgspec.json.Encoder()


def _decode(decoder: msgspec.json.Decoder, raw: bytes | bytearray | memoryview | str | None, what: str):
    if raw is None:
        raise ContractError("empty", f"{what}: empty value (tombstone) where a record was expected")
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise ContractError("schema", f"{what}: {exc}") from None
    except UnicodeDecodeError as exc:  # msgspec raises it for invalid UTF-8 inside a JSON string
        raise ContractError("encoding", f"{what}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except msgspec.DecodeError as exc:
        try:
            bytes(raw if not isinstance(raw, str) else raw.encode()).decode("utf-8")
        except UnicodeDecodeError:
            raise ContractError("encoding", f"{what}: not valid UTF-8") from None
        raise ContractError("json", f"{what}: not valid JSON ({exc})") from None


def decode_event(raw: bytes | bytearray | memoryview | str | None) -> Event:
    """Validated ``Event`` from raw JSON bytes, or ``ContractError``."""
    return _decode(_event_decoder, raw, "event")


def decode_item(raw: bytes | bytearray | memoryview | str | None) -> Item:
    """Validated ``Item`` from raw JSON bytes, or ``ContractError``."""
    return _decode(_item_decoder, raw, "item")


def encode(record: msgspec.Struct) -> bytes:
    """Compact JSON bytes of any record."""
    return _encoder.encode(record)


_VECTOR_RECORD = (
    b'{"user_id":%b,"event_id":%b,"ts":%d,"model_version":%b,"vector":[%b],"long_term":[%b],"short_term":[%b]}'
)


def encode_interest_vectors(
    heads: Sequence[tuple[str, str, int]], model_version: str, values: np.ndarray
) -> list[bytes]:
    """``InterestVector`` records of a batch: ``heads`` (user_id, event_id, ts) and ``values``
    ``[n, 3, D]`` (vector, long_term, short_term), each value rounded to 6 decimals. The same JSON
    values as ``encode(InterestVector(...))`` of the rounded lists, formatted for the whole batch at once."""
    n, parts, dim = values.shape
    if parts != 3:
        raise ValueError(f"interest vectors need 3 rows per record (vector, long_term, short_term), got {parts}")
    rows = json_rows(values.reshape(n * parts, dim)) if n else []
    if rows is None:  # a value json_rows does not format (NaN, infinity, 1,000 or more)
        lists = values.astype(np.float64).round(DECIMALS).tolist()
        return [
            encode(InterestVector(user_id=u, event_id=e, ts=ts, model_version=model_version, vector=v, long_term=lt,
                                  short_term=st))
            for (u, e, ts), (v, lt, st) in zip(heads, lists, strict=True)
        ]  # fmt: skip
    string = _encoder.encode
    version = string(model_version)
    return [
        _VECTOR_RECORD % (string(u), string(e), ts, version, rows[3 * i], rows[3 * i + 1], rows[3 * i + 2])
        for i, (u, e, ts) in enumerate(heads)
    ]
