"""Fast decode + validation of raw record bytes, and encoding of output records.

Decoders are built once per type; decoding a record is one C call. Every failure is a
``ContractError`` whose ``reason`` is a short stable code (for dead-letter metrics) and whose
message says what was wrong.
"""

from __future__ import annotations

import msgspec

from stream_app.contracts.records import Event, Item
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
