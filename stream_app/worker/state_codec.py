"""User state: the one RocksDB value per user, as compact versioned binary.

A user's state is the packed recurrent state of the model that produced it, the high-water mark
used to drop redelivered events, a bounded window of the raw step inputs of the most recent events
(to rebuild the state when the serving model changes) and a bounded list of recently seen items
(excluded from recommendations).

Byte layout of version 2 (little-endian; ``str*`` is a string list, see below)::

    u8        codec version (2)
    u8        m = byte length of the model version
    m bytes   model version, UTF-8
    u16       S, then f32[S]     packed recurrent state
    i64       last_ts            epoch ms of the newest applied event (-1: none yet)
    u64       applied            events applied since the state was created
    str*      ids_at_last_ts     ids of the applied events whose ts == last_ts (newest last)
    str*      seen               recently seen item ids (oldest first)
    u16       W                  events in the recent window (oldest first)
    u16       T                  comment embedding width (0 when no event in the window has text)
    str*      window event ids   W entries
    str*      window item ids    W entries
    u8[W]     event type index   in ``EVENT_TYPES``
    u8[W]     has_text
    f32[W]    rating             -1 when the event had none
    f32[W]    gap_s              seconds since the user's previous event, as stepped
    f16[n,T]  comment embeddings of the n window events with has_text, in window order

``str*`` in version 2: ``u16 count``; when its top bit is clear, ``u32 size`` and the UTF-8 bytes
of the strings joined by NUL (one decode and one split, where per-string decoding was most of
the codec's time); when set (a string contains NUL), ``count & 0x7fff`` strings in the version 1
form. Version 1 is the same layout with every ``str*`` as ``u16 count``, ``u16[count]`` UTF-8 byte
lengths, then the bytes one after the other; it stays decodable.

Comment embeddings are L2-normalised vectors; float16 keeps them to 2 bytes a value, far inside
the tolerance a rebuilt state needs. A new layout gets a new version byte and a decoder next to
``_decode_v1``; old versions stay decodable. Every failure is a ``StateCodecError``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from stream_app.exceptions import InterestStreamError

VERSION = 2
NO_TS = -1
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U16_U32 = struct.Struct("<HI")
_U32 = struct.Struct("<I")
_LENGTH_PREFIXED = 0x8000
_TS_APPLIED = struct.Struct("<qQ")
_WT = struct.Struct("<HH")


class StateCodecError(InterestStreamError):
    """A stored user state cannot be encoded or decoded; the user restarts from an empty state."""


class RecentEvent(NamedTuple):
    """The raw step inputs of one applied event that are not the recurrent state (a tuple: a
    decoded window builds 32 of them per user and batch)."""

    event_id: str
    item_id: str
    event_type: int
    rating: float
    gap_s: float
    comment_emb: np.ndarray | None = None  # float32 [T] when the event had text

    @property
    def has_text(self) -> bool:
        return self.comment_emb is not None


@dataclass(slots=True)
class UserState:
    model_version: str
    state: np.ndarray  # float32 [S]
    last_ts: int = NO_TS
    applied: int = 0
    ids_at_last_ts: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    window: list[RecentEvent] = field(default_factory=list)
    # not stored: the serving item index's rows of ``seen`` and ``window`` (pipeline.ItemRows), kept
    # while the state stays in memory so its next events need no id lookups
    item_rows: object | None = field(default=None, compare=False, repr=False)

    @classmethod
    def empty(cls, model_version: str, state_dim: int) -> UserState:
        return cls(model_version=model_version, state=np.zeros(state_dim, dtype=np.float32))


def as_stored(comment_emb: np.ndarray) -> np.ndarray:
    """A comment embedding as a decoded state holds it (float16 precision, as float32), so a state kept in
    memory (``state_cache``) equals the same state read back from the store."""
    return comment_emb.astype("<f2").astype(np.float32)


def _pack_strs(out: list[bytes], strings: Sequence[str]) -> None:
    joined = "\0".join(strings)
    if len(strings) < _LENGTH_PREFIXED and joined.count("\0") == max(0, len(strings) - 1):
        raw = joined.encode("utf-8")
        out += [_U16_U32.pack(len(strings), len(raw)), raw]
        return
    encoded = [s.encode("utf-8") for s in strings]
    out.append(_U16.pack(len(encoded) | _LENGTH_PREFIXED))
    out.append(np.fromiter((len(b) for b in encoded), dtype="<u2", count=len(encoded)).tobytes())
    out.extend(encoded)


def encode_state(user: UserState) -> bytes:
    """The state's bytes (layout in the module docstring)."""
    try:
        out: list[bytes] = []
        version = user.model_version.encode("utf-8")
        out += [_U8.pack(VERSION), _U8.pack(len(version)), version]
        state = np.ascontiguousarray(user.state, dtype="<f4").ravel()
        out += [_U16.pack(state.size), state.tobytes(), _TS_APPLIED.pack(user.last_ts, user.applied)]
        _pack_strs(out, user.ids_at_last_ts)
        _pack_strs(out, user.seen)
        w = len(user.window)
        # the window's columns (struct packs 32 values several times faster than np.array of a list)
        event_ids, item_ids, types, ratings, gaps, embs = zip(*user.window, strict=True) if w else ((),) * 6
        texts = [e for e in embs if e is not None]
        width = texts[0].shape[-1] if texts else 0
        out.append(_WT.pack(w, width))
        _pack_strs(out, event_ids)
        _pack_strs(out, item_ids)
        out += [
            struct.pack(f"<{w}B", *types),
            bytes(e is not None for e in embs),
            struct.pack(f"<{2 * w}f", *ratings, *gaps),
        ]
        if texts:
            out.append(np.stack(texts).astype("<f2").tobytes())
        return b"".join(out)
    except (struct.error, ValueError, TypeError, OverflowError, UnicodeEncodeError) as exc:
        raise StateCodecError(f"cannot encode the state of model {user.model_version!r}: {exc}") from exc


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = memoryview(buf)
        self.pos = 0

    def unpack(self, fmt: struct.Struct) -> tuple:
        values = fmt.unpack_from(self.buf, self.pos)
        self.pos += fmt.size
        return values

    def array(self, dtype: str, count: int) -> np.ndarray:
        arr = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos)
        self.pos += arr.nbytes
        return arr

    def text(self, n: int) -> str:
        end = self.pos + n
        if end > len(self.buf):
            raise ValueError("truncated string")
        s = str(self.buf[self.pos : end], "utf-8")
        self.pos = end
        return s

    def prefixed_strs(self, count: int) -> list[str]:
        """``count`` strings as ``u16[count]`` byte lengths, then the bytes (version 1's ``str*``)."""
        lengths = self.array("<u2", count).tolist()
        return [self.text(n) for n in lengths]

    def strs_v1(self) -> list[str]:
        (count,) = self.unpack(_U16)
        return self.prefixed_strs(count)

    def strs(self) -> list[str]:
        (count,) = self.unpack(_U16)
        if count & _LENGTH_PREFIXED:
            return self.prefixed_strs(count & ~_LENGTH_PREFIXED)
        (size,) = self.unpack(_U32)
        joined = self.text(size)
        strings = joined.split("\0") if count else []
        if len(strings) != count:
            raise ValueError(f"string list of {count} holds {len(strings)}")
        return strings


def _decode(r: _Reader, strs: Callable[[], list[str]]) -> UserState:
    (m,) = r.unpack(_U8)
    model_version = r.text(m)
    (s,) = r.unpack(_U16)
    state = r.array("<f4", s).astype(np.float32)
    last_ts, applied = r.unpack(_TS_APPLIED)
    ids_at_last_ts = strs()
    seen = strs()
    w, width = r.unpack(_WT)
    event_ids = strs()
    item_ids = strs()
    if len(event_ids) != w or len(item_ids) != w:
        raise ValueError(f"window of {w} events has {len(event_ids)} ids and {len(item_ids)} items")
    types = r.unpack(struct.Struct(f"<{w}B"))
    has_text = r.unpack(struct.Struct(f"<{w}?"))
    values = r.unpack(struct.Struct(f"<{2 * w}f"))
    ratings, gaps = values[:w], values[w:]
    n_text = sum(has_text)
    if n_text and not width:
        raise ValueError("window events have text but the embedding width is 0")
    embs = r.array("<f2", n_text * width).reshape(n_text, width).astype(np.float32) if n_text else None
    comment_embs: list[np.ndarray | None] = [None] * w
    if n_text:
        for k, i in enumerate(i for i, flag in enumerate(has_text) if flag):
            comment_embs[i] = embs[k]
    window = list(map(RecentEvent._make, zip(event_ids, item_ids, types, ratings, gaps, comment_embs, strict=True)))
    return UserState(model_version, state, last_ts, applied, ids_at_last_ts, seen, window)


def _decode_v1(r: _Reader) -> UserState:
    return _decode(r, r.strs_v1)


def _decode_v2(r: _Reader) -> UserState:
    return _decode(r, r.strs)


_DECODERS = {1: _decode_v1, 2: _decode_v2}


def decode_state(raw: bytes) -> UserState:
    """The ``UserState`` in ``raw``; ``StateCodecError`` when it is not a complete, known state."""
    if not raw:
        raise StateCodecError("empty state value")
    decoder = _DECODERS.get(raw[0])
    if decoder is None:
        raise StateCodecError(
            f"user state codec version {raw[0]} is unknown to this worker (knows {sorted(_DECODERS)}); "
            "upgrade the worker or delete the state"
        )
    r = _Reader(raw)
    r.pos = 1
    try:
        user = decoder(r)
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise StateCodecError(f"corrupt user state (version {raw[0]}): {exc}") from exc
    if r.pos != len(raw):
        raise StateCodecError(f"corrupt user state: {len(raw) - r.pos} trailing bytes")
    return user
