"""Stage 1 of the hot path: raw event records -> validated events, forget requests, dead letters."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from stream_app.contracts import ContractError, DeadLetter, Event, Item, decode_event, decode_item

FORGET = "forget"
RAW_LIMIT = 65_536


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One consumed record, whatever its bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = -1  # the record's timestamp, epoch ms (-1: none)


@dataclass(frozen=True, slots=True)
class Incoming:
    """A valid event (``type == "forget"`` or a tombstone: delete the user) and the record it came from."""

    user_id: str
    record: RawRecord
    event: Event | None  # None: a tombstone on the events topic

    @property
    def is_forget(self) -> bool:
        return self.event is None or self.event.type == FORGET


@dataclass(frozen=True, slots=True)
class Rejected:
    key: bytes | None
    letter: DeadLetter


def dead_letter(record: RawRecord, reason: str, error: str) -> Rejected:
    """The dead-letter record of ``record``: raw bytes as text when they are UTF-8, base64 otherwise.

    Payloads over ``RAW_LIMIT`` bytes are cut (the error says so): a dead letter must fit in one
    Kafka message, and topic, partition and offset locate the full original.
    """
    raw = record.value or b""
    cut = raw[:RAW_LIMIT]
    try:
        text, encoding = raw.decode("utf-8")[:RAW_LIMIT], "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(cut).decode("ascii"), "base64"
    if len(raw) > RAW_LIMIT:
        error = f"{error} [raw cut to its first {RAW_LIMIT} of {len(raw)} bytes/characters]"
    letter = DeadLetter(
        error=error[:RAW_LIMIT],
        reason=reason,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        raw=text,
        raw_encoding=encoding,
    )
    return Rejected(record.key, letter)


def decode_records(records: list[RawRecord]) -> tuple[list[Incoming], list[Rejected]]:
    """Validate every record; keep the good ones in order.

    The record key must be the event's user_id: the key picks the partition, and a user's state
    lives in the partition of its events, so an event under another key would fork the state.
    """
    accepted: list[Incoming] = []
    rejected: list[Rejected] = []
    for record in records:
        if record.value is None:
            if record.key:
                try:
                    accepted.append(Incoming(record.key.decode("utf-8"), record, None))
                    continue
                except UnicodeDecodeError:
                    pass
            rejected.append(dead_letter(record, "empty", "tombstone without a valid user_id key"))
            continue
        try:
            event = decode_event(record.value)
        except ContractError as exc:
            rejected.append(dead_letter(record, exc.reason, str(exc)))
            continue
        if record.key is None or record.key != event.user_id.encode("utf-8"):
            rejected.append(
                dead_letter(record, "key", f"record key {record.key!r} is not the event's user_id {event.user_id!r}")
            )
            continue
        accepted.append(Incoming(event.user_id, record, event))
    return accepted, rejected


def group_by_user(incoming: list[Incoming]) -> dict[str, list[Incoming]]:
    """user_id -> that user's records in arrival (= partition) order."""
    groups: dict[str, list[Incoming]] = {}
    for item in incoming:
        groups.setdefault(item.user_id, []).append(item)
    return groups


def decode_catalog_record(record: RawRecord) -> tuple[str, Item | None]:
    """An items-topic record as ``(item_id, item)`` (item None: a tombstone), or ``ContractError``. The key
    must be the item id: the topic is compacted by key, so any other key would keep stale items alive."""
    try:
        key = record.key.decode("utf-8") if record.key else None
    except UnicodeDecodeError:
        key = None
    if key is None:
        raise ContractError("key", "catalog record without an item_id key (UTF-8)")
    if record.value is None:
        return key, None
    item = decode_item(record.value)
    if item.item_id != key:
        raise ContractError("key", f"record key {key!r} is not the item's item_id {item.item_id!r}")
    return key, item
