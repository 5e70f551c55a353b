"""Fast decode + validation of raw record bytes, and encoding of output records.

Decoders are built once per type; decoding a record is one C call. Decoding is total: any value
(bytes, text, None) gives a record or a ``ContractError`` whose ``reason`` is a short stable code
(for dead-letter metrics) and whose message says what was wrong; no other exception gets out.
Bounds that hold whatever the fields (documented in every schema's ``$comment``):
``MAX_RECORD_BYTES`` of JSON and ``MAX_DEPTH`` levels of nesting, checked before msgspec parses
(its recursive parser raised ``RecursionError`` on 1,000 nested ``[`` in an unknown field).
Numbers beyond a field's bounds, NaN and infinity never decode (JSON has no NaN; an overflowing
number is out of range).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TypeVar

import msgspec
import numpy as np

from stream_app.contracts.float_json import DECIMALS, json_rows
from stream_app.contracts.records import Event, InterestVector, Item, ModelUpdate
from stream_app.exceptions import InterestStreamError


class ContractError(InterestStreamError):
    """Raw bytes are not a valid record of the expected contract."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


R = TypeVar("R", bound=msgspec.Struct)
Raw = bytes | bytearray | memoryview | str | None

# Kafka's default largest message (broker message.max.bytes): a bigger record cannot come through a
# default cluster, and every valid record is far smaller (ids 256 characters, text 32,768).
MAX_RECORD_BYTES = 1_048_576
# Every record is flat but a model update's metrics (2 levels); unknown fields may nest this deep.
MAX_DEPTH = 32
_encoder = msgspec.json.Encoder()
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 / -1 as int8


def nesting_depth(raw: bytes) -> int:
    """Deepest nesting of arrays and objects in JSON text (brackets inside strings ignored)."""
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS).translate(_BRACKET_STEP)
    steps = np.frombuffer(brackets, dtype=np.int8)
    return int(steps.cumsum(dtype=np.int64).max(initial=0))


def _as_bytes(raw: bytes | bytearray | memoryview | str, what: str) -> bytes:
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, str):
        try:
            return raw.encode("utf-8")
        except UnicodeEncodeError:
            raise ContractError("encoding", f"{what}: text holds lone surrogates, not valid UTF-8") from None
    return bytes(raw)


def _decode(decoder: msgspec.json.Decoder, raw: Raw, what: str):
    if raw is None:
        raise ContractError("empty", f"{what}: empty value (tombstone) where a record was expected")
    raw = _as_bytes(raw, what)
    if len(raw) > MAX_RECORD_BYTES:
        raise ContractError("size", f"{what}: {len(raw)} bytes, more than the {MAX_RECORD_BYTES} a record may have")
    # bytes.count is a C scan: a record with few brackets cannot nest deeper than their number
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and nesting_depth(raw) > MAX_DEPTH:
        raise ContractError("depth", f"{what}: JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise ContractError("schema", f"{what}: {exc}") from None
    except UnicodeDecodeError as exc:  # msgspec raises it for invalid UTF-8 inside a JSON string
        raise ContractError("encoding", f"{what}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except msgspec.DecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ContractError("encoding", f"{what}: not valid UTF-8") from None
        raise ContractError("json", f"{what}: not valid JSON ({exc})") from None
    except RecursionError:
        raise ContractError("depth", f"{what}: JSON nested too deep to parse") from None
    except Exception as exc:  # total: whatever else a parser may raise is the record's fault
        raise ContractError("invalid", f"{what}: {type(exc).__name__}: {exc}") from None


def record_decoder(record_type: type[R], what: str | None = None) -> Callable[[Raw], R]:
    """A total decoder of ``record_type``: raw value -> validated record, or ``ContractError``."""
    decoder = msgspec.json.Decoder(record_type)
    name = what or record_type.__name__

    def decode(raw: Raw) -> R:
        return _decode(decoder, raw, name)

    return decode


decode_event: Callable[[Raw], Event] = record_decoder(Event, "event")
decode_item: Callable[[Raw], Item] = record_decoder(Item, "item")
decode_model_update: Callable[[Raw], ModelUpdate] = record_decoder(ModelUpdate, "model update")


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
