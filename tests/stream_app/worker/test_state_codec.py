import numpy as np
import pytest

from stream_app.worker.state_codec import (
    NO_OFFSET,
    RecentEvent,
    Served,
    ShadowColumns,
    StateCodecError,
    UserState,
    active_at,
    decode_state,
    encode_state,
    id_array,
    id_hash,
)

T = 384


def _user(window: int = 32, seen: int = 100, state_dim: int = 192, seed: int = 0) -> UserState:
    rng = np.random.default_rng(seed)
    events = []
    for i in range(window):
        emb = None
        if i % 4 == 0:
            emb = rng.normal(size=T).astype(np.float32)
            emb /= np.linalg.norm(emb)
        events.append(RecentEvent(f"e-{i:08d}-ü", f"item-{i}", i % 6, -1.0 if i % 2 else 4.5, 12.5 * i, emb))
    return UserState(
        model_version="v20261122-140000",
        state=rng.normal(size=state_dim).astype(np.float32),
        active_at=1_790_000_000_000,
        history_ts=1_650_000_000_000,
        vectors=rng.normal(size=(3, 16)).astype(np.float32),
        last_ts=1_700_000_000_123,
        applied=12345,
        seen=[f"item-{i}" for i in range(seen)],
        window=events,
        last_offset=987_654,
        forgotten_at=1_600_000_000_000,
        id_floor_ts=1_699_999_999_000,
        id_hashes=id_array("Q", [id_hash(f"e-{i}") for i in range(64)]),
        id_ts=id_array("q", [1_700_000_000_000 + i for i in range(64)]),
        served=Served("v20261122-140000", True, [f"item-{i}" for i in range(100, 110)]),
        shadow=ShadowColumns(
            "v20261123-090000-ß", rng.normal(size=state_dim + 8).astype(np.float32),
            Served("v20261123-090000-ß", False, [f"item-{i}" for i in range(105, 115)]),
        ),
    )  # fmt: skip


MARKS = (
    "last_ts", "applied", "last_offset", "forgotten_at", "id_floor_ts", "id_hashes", "id_ts", "seen", "active_at",
    "history_ts",
)  # fmt: skip


def _assert_same(a: UserState, b: UserState, emb_atol: float = 0.0) -> None:
    assert a.model_version == b.model_version
    np.testing.assert_array_equal(a.state, b.state)
    assert b.state.dtype == np.float32
    assert (a.vectors is None) == (b.vectors is None)
    if a.vectors is not None:
        np.testing.assert_array_equal(a.vectors, b.vectors)
        assert b.vectors.dtype == np.float32
    assert [list(getattr(a, m)) if m in ("id_hashes", "id_ts") else getattr(a, m) for m in MARKS] == [
        list(getattr(b, m)) if m in ("id_hashes", "id_ts") else getattr(b, m) for m in MARKS
    ]
    assert len(a.window) == len(b.window)
    for x, y in zip(a.window, b.window, strict=True):
        assert (x.event_id, x.item_id, x.event_type, x.has_text) == (y.event_id, y.item_id, y.event_type, y.has_text)
        assert x.rating == y.rating and np.float32(x.gap_s) == y.gap_s
        if x.has_text:
            np.testing.assert_allclose(x.comment_emb, y.comment_emb, atol=emb_atol)
    assert a.served == b.served
    assert (a.shadow is None) == (b.shadow is None)
    if a.shadow is not None:
        assert (a.shadow.model_version, a.shadow.served) == (b.shadow.model_version, b.shadow.served)
        np.testing.assert_array_equal(a.shadow.state, b.shadow.state)
        assert b.shadow.state.dtype == np.float32


def test_round_trip_keeps_every_field():
    user = _user()
    raw = encode_state(user)
    assert raw[0] == 5 and active_at(raw) == user.active_at
    # float16 embeddings: about 1e-3 relative, far inside what a rebuilt state needs
    _assert_same(user, decode_state(raw), emb_atol=1e-3)


# encode_state of the version 1 codec (before the string lists became NUL-joined) for V1_STATE
V1_BYTES = bytes.fromhex(
    "010876312d6d6f64656c0400000000000000003e0000803e0000c03e7b68e5cf8b010000070000000000000001000300652d33020003000400"
    "692d31692dc3bc02000200020003000300652d32652d33020003000400692d31692dc3bc00050001000080bf000080400000000000007042cd"
    "38663a"
)
# the same state (9 applied, ids at last_ts e-3 and e-4) written by the version 2 codec
V2_BYTES = bytes.fromhex(
    "020876322d6d6f64656c0400000000000000003e0000803e0000c03e7b68e5cf8b0100000900000000000000020007000000652d3300652d"
    "34020008000000692d3100692dc3bc02000200020007000000652d3200652d33020008000000692d3100692dc3bc00050001000080bf0000"
    "80400000000000007042cd38663a"
)
# a version 3 state (11 applied, offset 77, ids e-2 and e-3 remembered, floor 1_699_999_000_000)
V3_BYTES = bytes.fromhex(
    "030876332d6d6f64656c0400000000000000003e0000803e0000c03e7b68e5cf8b0100000b000000000000004d00000000000000ffffffff"
    "ffffffffc025d6cf8b01000002000706c581494c583eca457226f288ac330068e5cf8b0100007b68e5cf8b010000020008000000692d3100"
    "692dc3bc02000200020007000000652d3200652d33020008000000692d3100692dc3bc00050001000080bf000080400000000000007042cd"
    "38663a"
)
# a version 4 state (12 applied, offset 78, activity and history marks, 3 x 2 vectors)
V4_BYTES = bytes.fromhex(
    "04006c50c4a00100000876342d6d6f64656c0400000000000000003e0000803e0000c03e7b68e5cf8b0100000c000000000000004e0000"
    "0000000000ffffffffffffffffc025d6cf8b01000002000706c581494c583eca457226f288ac330068e5cf8b0100007b68e5cf8b0100000200"
    "08000000692d3100692dc3bc02000200020007000000652d3200652d33020008000000692d3100692dc3bc00050001000080bf0000804000"
    "00000000007042cd38663a00f4a92b800100000200000000000000803e0000003f0000403f0000803f0000a03f"
)
WINDOW = [
    RecentEvent("e-2", "i-1", 0, -1.0, 0.0, None),
    RecentEvent("e-3", "i-ü", 5, 4.0, 60.0, np.array([0.6, 0.8], dtype=np.float32)),
]


def _old_state(version: str, applied: int, ids: list[str]) -> UserState:
    """What a version 1 or 2 state decodes to: its window's ids and those at last_ts remembered at last_ts,
    the offset unknown, nothing older taken for new (module docstring of state_codec)."""
    ts = 1_700_000_000_123
    return UserState(
        version, np.arange(4, dtype=np.float32) / 8, ts, applied, ["i-1", "i-ü"], WINDOW,
        last_offset=NO_OFFSET, id_floor_ts=ts, id_hashes=[id_hash(i) for i in ids], id_ts=[ts] * len(ids),
    )  # fmt: skip


def _v3_state() -> UserState:
    """What the version 3 state decodes to: its marks as written, no activity time, history mark or vectors."""
    ts = 1_700_000_000_123
    return UserState(
        "v3-model", np.arange(4, dtype=np.float32) / 8, ts, 11, ["i-1", "i-ü"], WINDOW, last_offset=77,
        id_floor_ts=1_699_999_000_000, id_hashes=[id_hash("e-2"), id_hash("e-3")], id_ts=[ts - 123, ts],
    )  # fmt: skip


def _v4_state() -> UserState:
    """What the version 4 state decodes to: no list served, no shadow columns."""
    ts = 1_700_000_000_123
    return UserState(
        "v4-model", np.arange(4, dtype=np.float32) / 8, ts, 12, ["i-1", "i-ü"], WINDOW, last_offset=78,
        id_floor_ts=1_699_999_000_000, id_hashes=[id_hash("e-2"), id_hash("e-3")], id_ts=[ts - 123, ts],
        active_at=1_790_000_000_000, history_ts=1_650_000_000_000,
        vectors=np.arange(6, dtype=np.float32).reshape(3, 2) / 4,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (V1_BYTES, _old_state("v1-model", 7, ["e-2", "e-3"])),
        (V2_BYTES, _old_state("v2-model", 9, ["e-2", "e-3", "e-4"])),
        (V3_BYTES, _v3_state()),
        (V4_BYTES, _v4_state()),
    ],
)
def test_states_written_by_older_codecs_still_decode_and_are_rewritten_as_version_5(raw, expected):
    user = decode_state(raw)
    _assert_same(expected, user, emb_atol=1e-3)
    assert active_at(raw) == expected.active_at and user.served is None and user.shadow is None
    again = encode_state(user)
    assert again[0] == 5
    _assert_same(expected, decode_state(again), emb_atol=1e-3)


def test_a_list_served_without_shadow_columns_and_an_empty_list_round_trip():
    user = _user(window=2, seen=2)
    user.shadow = None
    _assert_same(user, decode_state(encode_state(user)), emb_atol=1e-3)
    user.served = Served("v1", False, [])
    user.shadow = ShadowColumns("v2", np.zeros(4, dtype=np.float32))
    _assert_same(user, decode_state(encode_state(user)), emb_atol=1e-3)


def test_a_forgotten_users_marker_is_small_and_round_trips():
    marker = UserState("", np.zeros(0, dtype=np.float32), last_offset=42, forgotten_at=1_700_000_000_000)
    marker.id_hashes.append(id_hash("forget-1"))
    marker.id_ts.append(1_700_000_000_000)
    raw = encode_state(marker)
    back = decode_state(raw)
    assert back.is_marker and not _user().is_marker
    _assert_same(marker, back)
    print(f"\nmarker of a forgotten user: {len(raw)} bytes")
    assert len(raw) <= 110  # 104: the marks and one id; no state, window, items, vectors or lists


def test_ids_holding_nul_round_trip_through_the_length_prefixed_form():
    user = _user(window=3, seen=2)
    user.seen = ["a\0b", "", "c"]
    user.window[1] = RecentEvent("e\0\0", "i\0", 1, 2.0, 3.0, None)
    _assert_same(user, decode_state(encode_state(user)), emb_atol=1e-3)


def test_empty_state_round_trips():
    user = UserState.empty("v1", 8)
    _assert_same(user, decode_state(encode_state(user)))


def test_state_is_compact():
    raw = encode_state(_user())
    # 32-event window with 8 comments, 100 seen items, 64 remembered ids, S=192 and a shadow's S=200: comment
    # embeddings dominate
    expected = 192 * 4 + 200 * 4 + 8 * T * 2 + 64 * 16
    print(f"\nencoded user state: {len(raw)} bytes (state+embeddings {expected})")
    assert len(raw) < expected + 3000


def test_unknown_codec_version_fails_clearly():
    raw = bytearray(encode_state(_user()))
    raw[0] = 6
    with pytest.raises(StateCodecError, match="version 6 is unknown"):
        decode_state(bytes(raw))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda raw: b"",
        lambda raw: raw[:-1],
        lambda raw: raw[: len(raw) // 2],
        lambda raw: raw + b"\x00",
        lambda raw: raw[:9] + b"\xff\xfe" + raw[11:],  # the model version's length
        lambda raw: b"\x01" + b"\xff" * 40,
        lambda raw: b'{"json": true}',
    ],
)
def test_corrupt_bytes_raise_state_codec_error(mangle):
    with pytest.raises(StateCodecError):
        decode_state(mangle(encode_state(_user(window=5, seen=3))))


def test_unencodable_state_raises_state_codec_error():
    user = _user(window=1)
    user.model_version = "v" * 300  # longer than the u8 length prefix allows
    with pytest.raises(StateCodecError):
        encode_state(user)
    user = _user(window=1)
    user.shadow.model_version = ""  # a shadow of no model
    with pytest.raises(StateCodecError):
        encode_state(user)


def test_every_truncation_is_detected():
    raw = encode_state(_user(window=6, seen=4, state_dim=16))
    for n in range(len(raw)):
        with pytest.raises(StateCodecError):
            decode_state(raw[:n])
