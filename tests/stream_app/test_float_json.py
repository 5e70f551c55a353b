"""Batch JSON formatting of output vectors: the numbers parse to exactly round(x, 6), and the
records to exactly what the msgspec struct encoding of the rounded lists gives."""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pytest

from stream_app.contracts import InterestVector, encode, encode_interest_vectors
from stream_app.contracts.float_json import json_rows


def _parsed(row: bytes) -> list[float]:
    return json.loads(b"[" + row + b"]")


def test_every_six_decimal_fraction_formats_to_its_rounded_value():
    values = (np.arange(1_000_000) / 1e6).reshape(1000, 1000)
    for expected, row in zip(values.round(6).tolist(), json_rows(values), strict=True):
        assert _parsed(row) == expected


def test_integers_signs_and_float32_values_parse_to_round_6():
    rng = np.random.default_rng(0)
    values = (rng.standard_normal((50, 128)) * rng.choice([0.01, 1, 30, 300], (50, 1))).astype(np.float32)
    values[0, :8] = [0.0, -0.0, 1e-9, -4e-7, -3.5, 999.9999, -999.9999, 10.0]
    wide = values.astype(np.float64)
    for expected, row in zip(wide.round(6).tolist(), json_rows(values), strict=True):
        assert _parsed(row) == expected
    integers = np.arange(-999, 1000, dtype=np.float64)[None]
    assert _parsed(json_rows(integers)[0]) == integers[0].tolist()
    assert json_rows(values)[0].startswith(b"0.0,0.0,0.0,0.0,-3.5,999.999878,-999.999878,10.0,")


@pytest.mark.parametrize("bad", [1000.0, -1e6, np.nan, np.inf])
def test_values_it_cannot_format_are_left_to_the_slow_path(bad):
    assert json_rows(np.array([[0.5, bad]])) is None


def test_empty_rows_format_to_empty_arrays():
    assert json_rows(np.zeros((2, 0))) == [b"", b""]


def _old_records(heads, version, values):
    lists = values.astype(np.float64).round(6).tolist()
    return [
        encode(InterestVector(user_id=u, event_id=e, ts=ts, model_version=version, vector=v, long_term=lt,
                              short_term=st))
        for (u, e, ts), (v, lt, st) in zip(heads, lists, strict=True)
    ]  # fmt: skip


@pytest.mark.parametrize("scale", [0.5, 2000.0])  # the batch path, and the fallback for large values
def test_records_decode_to_what_the_struct_encoding_gives(scale):
    rng = np.random.default_rng(1)
    values = (rng.standard_normal((20, 3, 16)) * scale).astype(np.float32)
    heads = [(f'user "{i}"\\', f"e-{i}", 1_700_000_000_000 + i) for i in range(20)]
    new = encode_interest_vectors(heads, "v1", values)
    old = _old_records(heads, "v1", values)
    decode = msgspec.json.Decoder(InterestVector).decode
    assert [decode(r) for r in new] == [decode(r) for r in old]
    assert encode_interest_vectors([], "v1", np.zeros((0, 3, 16), dtype=np.float32)) == []
