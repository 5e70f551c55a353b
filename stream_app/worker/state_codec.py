"""User state: the one RocksDB value per user, as compact versioned binary.

A user's state is the packed recurrent state of the model that produced it, the marks the
event-time policy (``event_time``) decides by, a bounded window of the raw step inputs of the most
recent events (to rebuild the state when the serving model changes) and a bounded list of recently
seen items (excluded from recommendations). A forgotten user keeps only a *marker*: the marks,
no recurrent state (S = 0), no window, no seen items, no model version.

For online evaluation (``online_eval``) a state keeps the ids of the last top-K list the user was
served (``served``: the model version that ranked it, whether its record was emitted, the items), so
the user's next event can judge it; while a challenger runs beside the serving model (``shadow``),
the challenger's own columns: its version, its packed recurrent state and its last list.

A state also keeps what the query API answers from without stepping: the interest, long- and
short-term vectors of the newest step; when the worker last applied an event to it (``active_at``,
its clock: inactive states expire by it when a TTL is set); and up to which ts its events came from
a bootstrapped history (``history_ts``: such events sent again are duplicates).

Byte layout of version 5 (little-endian; ``str*`` is a string list, see below)::

    u8        codec version (5)
    i64       active_at          the worker's clock (epoch ms) when the state last applied an event
                                 (-1: unknown); first, so an expiry sweep reads 9 bytes of a value
    u8        m = byte length of the model version
    m bytes   model version, UTF-8
    u16       S, then f32[S]     packed recurrent state
    i64       last_ts            epoch ms of the newest applied event (-1: none yet)
    u64       applied            events applied since the state was created
    i64       last_offset        events-topic offset of the newest applied record (-1: unknown)
    i64       forgotten_at       epoch ms up to which the user was erased (-1: never)
    i64       id_floor_ts        newest ts among the event ids the memory below let go (-1: none)
    u16       N                  event ids remembered (oldest first)
    u64[N]    id hashes          first 8 bytes of blake2b of each event id, as a little-endian u64
    i64[N]    id ts              each remembered event's ts
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
    i64       history_ts         newest ts of the user's events a bootstrap applied (-1: none)
    u16       D, then f32[3, D]  interest, long-term and short-term vectors after the newest step
                                 (D = 0: none, as in a marker)
    list      served             the last list served (below)
    u8        m                  byte length of the challenger's version (0: no shadow columns, end)
    m bytes   challenger version, UTF-8
    u16       S', then f32[S']   the challenger's packed recurrent state
    list      the challenger's last list

``list``: ``u8 m``, then (m > 0) ``m`` bytes of the model version that ranked it, ``u8`` 1 when its
recommendations record was emitted (0: only ranked, a shadow), and a ``str*`` of its item ids, best
first; ``m = 0``: no list.

Version 4 is the same without the lists and the shadow columns (decoded: none). Version 3 is
version 4 without ``active_at``, ``history_ts`` and the vectors (decoded: -1 and none).

``str*``: ``u16 count``; when its top bit is clear, ``u32 size`` and the UTF-8 bytes of the
strings joined by NUL (one decode and one split, where per-string decoding was most of the codec's
time); when set (a string contains NUL), ``count & 0x7fff`` strings in the version 1 form.

Versions 1 and 2 stay decodable. They had, in place of the three marks and the id memory, a
``str*`` of the ids of the applied events at ``last_ts`` (version 1: every ``str*`` as ``u16
count``, ``u16[count]`` UTF-8 byte lengths, then the bytes). Decoded, such a state remembers those
ids and its window's, all at ``last_ts``, with ``last_offset`` unknown and ``id_floor_ts`` =
``last_ts``: an unknown id older than its newest event is dead-lettered as out of order rather
than risked as a redelivery.

Event ids are remembered as 8-byte hashes: 16 bytes an id with its ts, whatever the id's length
(36-character UUIDs took 37). A new id collides with one of the N a user's memory holds with
probability about N / 2^64. Comment embeddings are L2-normalised vectors; float16 keeps them to 2 bytes a
value, far inside the tolerance a rebuilt state needs. A new layout gets a new version byte and a
decoder next to ``_decode_v5``. Every failure is a ``StateCodecError``.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from stream_app.exceptions import InterestStreamError

VERSION = 5
NO_TS = -1
NO_OFFSET = -1
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U16_U32 = struct.Struct("<HI")
_U32 = struct.Struct("<I")
_LENGTH_PREFIXED = 0x8000
_TS_APPLIED = struct.Struct("<qQ")
_MARKS = struct.Struct("<qqqH")  # last_offset, forgotten_at, id_floor_ts, N
_WT = struct.Struct("<HH")
_I64 = struct.Struct("<q")
_HEAD = struct.Struct("<Bq")  # version, active_at


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


class Served(NamedTuple):
    """A top-K list a user was served, as its next event judges it."""

    model_version: str  # the model that ranked it
    exposed: bool  # its recommendations record was emitted (False: a shadow's list, never shown)
    items: list[str]  # item ids, best first


@dataclass(slots=True)
class ShadowColumns:
    """A challenger's part of a user's state while it runs beside the serving model."""

    model_version: str
    state: np.ndarray  # float32 [S'] of the challenger
    served: Served | None = None


def id_array(typecode: str, values: Iterable[int] = ()) -> array:
    """An id-memory column: ``Q`` hashes or ``q`` ts, 8 bytes a value (a list of ints took 5 KB more a user)."""
    return array(typecode, values)


@lru_cache(maxsize=1024)  # the policy asks for an event's hash to decide, then to remember it
def id_hash(event_id: str) -> int:
    """The 64-bit hash an event id is remembered by."""
    return int.from_bytes(hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


@dataclass(slots=True)
class UserState:
    model_version: str
    state: np.ndarray  # float32 [S]
    last_ts: int = NO_TS
    applied: int = 0
    seen: list[str] = field(default_factory=list)
    window: list[RecentEvent] = field(default_factory=list)
    last_offset: int = NO_OFFSET
    forgotten_at: int = NO_TS
    id_floor_ts: int = NO_TS
    id_hashes: array = field(
        default_factory=lambda: id_array("Q")
    )  # recent applied event ids (``id_hash``), oldest first
    id_ts: array = field(default_factory=lambda: id_array("q"))  # their ts
    active_at: int = NO_TS
    history_ts: int = NO_TS
    vectors: np.ndarray | None = None  # float32 [3, D]: interest, long-term, short-term after the newest step
    served: Served | None = None  # the last list served, for online evaluation
    shadow: ShadowColumns | None = None  # a challenger's columns
    # not stored: the serving item index's rows of ``seen`` and ``window`` (pipeline.ItemRows), kept
    # while the state stays in memory so its next events need no id lookups
    item_rows: object | None = field(default=None, compare=False, repr=False)

    @classmethod
    def empty(cls, model_version: str, state_dim: int) -> UserState:
        return cls(model_version=model_version, state=np.zeros(state_dim, dtype=np.float32))

    @property
    def is_marker(self) -> bool:
        """A forgotten user's marker: the marks only, nothing learned from the user's events."""
        return self.state.size == 0

    def snapshot(self) -> UserState:
        """A copy that stays as it is while a batch steps this state: a step replaces the arrays (shared
        here) and changes the lists and id arrays in place (copied). For readers: the online evaluation's
        columns and the item-row cache are left out. (Spelled out: ``dataclasses.replace`` took twice as
        long, and the event loop takes one of each user of every batch.)"""
        return UserState(
            model_version=self.model_version,
            state=self.state,
            last_ts=self.last_ts,
            applied=self.applied,
            seen=list(self.seen),
            window=list(self.window),
            last_offset=self.last_offset,
            forgotten_at=self.forgotten_at,
            id_floor_ts=self.id_floor_ts,
            id_hashes=self.id_hashes[:],
            id_ts=self.id_ts[:],
            active_at=self.active_at,
            history_ts=self.history_ts,
            vectors=self.vectors,
        )


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
        out += [_HEAD.pack(VERSION, user.active_at), _U8.pack(len(version)), version]
        state = np.ascontiguousarray(user.state, dtype="<f4").ravel()
        out += [_U16.pack(state.size), state.tobytes(), _TS_APPLIED.pack(user.last_ts, user.applied)]
        n = len(user.id_hashes)
        if len(user.id_ts) != n:
            raise ValueError(f"{n} remembered ids with {len(user.id_ts)} ts")
        out += [_MARKS.pack(user.last_offset, user.forgotten_at, user.id_floor_ts, n), *_le(user.id_hashes, user.id_ts)]
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
        vectors = np.zeros((3, 0)) if user.vectors is None else user.vectors
        if vectors.shape[0] != 3:
            raise ValueError(f"vectors of shape {vectors.shape}, expected (3, D)")
        out += [_I64.pack(user.history_ts), _U16.pack(vectors.shape[1]), np.asarray(vectors, dtype="<f4").tobytes()]
        _pack_served(out, user.served)
        shadow = user.shadow
        if shadow is None:
            out.append(_U8.pack(0))
        else:
            if not shadow.model_version:
                raise ValueError("shadow columns without a model version")
            _pack_version(out, shadow.model_version)
            packed = np.ascontiguousarray(shadow.state, dtype="<f4").ravel()
            out += [_U16.pack(packed.size), packed.tobytes()]
            _pack_served(out, shadow.served)
        return b"".join(out)
    except (struct.error, ValueError, TypeError, OverflowError, UnicodeEncodeError) as exc:
        raise StateCodecError(f"cannot encode the state of model {user.model_version!r}: {exc}") from exc


def _pack_version(out: list[bytes], version: str) -> None:
    raw = version.encode("utf-8")
    out += [_U8.pack(len(raw)), raw]


def _pack_served(out: list[bytes], served: Served | None) -> None:
    if served is None:
        out.append(_U8.pack(0))
        return
    if not served.model_version:
        raise ValueError("a served list without a model version")
    _pack_version(out, served.model_version)
    out.append(_U8.pack(served.exposed))
    _pack_strs(out, served.items)


def _le(*columns: array) -> list[bytes]:
    if sys.byteorder == "little":
        return [c.tobytes() for c in columns]
    swapped = [array(c.typecode, c) for c in columns]
    for c in swapped:
        c.byteswap()
    return [c.tobytes() for c in swapped]


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

    def id_column(self, typecode: str, count: int) -> array:
        end = self.pos + 8 * count
        if end > len(self.buf):
            raise ValueError("truncated id memory")
        column = id_array(typecode)
        column.frombytes(self.buf[self.pos : end])
        if sys.byteorder != "little":
            column.byteswap()
        self.pos = end
        return column

    def served(self) -> Served | None:
        (m,) = self.unpack(_U8)
        if not m:
            return None
        version = self.text(m)
        (exposed,) = self.unpack(_U8)
        return Served(version, bool(exposed), self.strs())

    def shadow(self) -> ShadowColumns | None:
        (m,) = self.unpack(_U8)
        if not m:
            return None
        version = self.text(m)
        (s,) = self.unpack(_U16)
        return ShadowColumns(version, self.array("<f4", s).astype(np.float32), self.served())

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


def _decode(r: _Reader, strs: Callable[[], list[str]], version: int) -> UserState:
    v3 = version >= 3
    active_at = r.unpack(_I64)[0] if version >= 4 else NO_TS
    (m,) = r.unpack(_U8)
    model_version = r.text(m)
    (s,) = r.unpack(_U16)
    state = r.array("<f4", s).astype(np.float32)
    last_ts, applied = r.unpack(_TS_APPLIED)
    if v3:
        last_offset, forgotten_at, id_floor_ts, n = r.unpack(_MARKS)
        id_hashes, id_ts = r.id_column("Q", n), r.id_column("q", n)
    else:
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
    user = UserState(model_version, state, last_ts, applied, seen, window, active_at=active_at)
    if version >= 4:
        (user.history_ts,) = r.unpack(_I64)
        (d,) = r.unpack(_U16)
        if d:
            user.vectors = r.array("<f4", 3 * d).reshape(3, d).astype(np.float32)
    if version >= 5:
        user.served = r.served()
        user.shadow = r.shadow()
    if v3:
        user.last_offset, user.forgotten_at, user.id_floor_ts = last_offset, forgotten_at, id_floor_ts
        user.id_hashes, user.id_ts = id_hashes, id_ts
    else:  # see the module docstring: what an older state remembers
        remembered = id_array("Q", dict.fromkeys(map(id_hash, [*event_ids, *ids_at_last_ts])))
        user.id_hashes, user.id_ts, user.id_floor_ts = remembered, id_array("q", [last_ts] * len(remembered)), last_ts
    return user


def _decode_v1(r: _Reader) -> UserState:
    return _decode(r, r.strs_v1, 1)


def _decode_v2(r: _Reader) -> UserState:
    return _decode(r, r.strs, 2)


def _decode_v3(r: _Reader) -> UserState:
    return _decode(r, r.strs, 3)


def _decode_v4(r: _Reader) -> UserState:
    return _decode(r, r.strs, 4)


def _decode_v5(r: _Reader) -> UserState:
    return _decode(r, r.strs, 5)


_DECODERS = {1: _decode_v1, 2: _decode_v2, 3: _decode_v3, 4: _decode_v4, 5: _decode_v5}


def active_at(raw: bytes) -> int:
    """A stored state's ``active_at`` from its first 9 bytes (``NO_TS`` for a state of an older codec,
    which did not keep it); ``StateCodecError`` when ``raw`` is no state."""
    if not raw or raw[0] not in _DECODERS:
        raise StateCodecError(f"not a user state (codec version byte {raw[:1]!r})")
    if raw[0] < 4:
        return NO_TS
    if len(raw) < _HEAD.size:
        raise StateCodecError("corrupt user state: truncated")
    return _HEAD.unpack_from(raw)[1]


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
