"""Rows of floats as JSON numbers rounded to 6 decimals, formatted for a whole batch at once.

Every event's interest-vector record carries three 128-float vectors; rounding them and formatting
each float through Python objects was a sixth of the worker's batch time. ``json_rows`` builds the
characters of all the batch's numbers with a few array operations instead: each value becomes two
8-byte words (sign and integer digits; the point, the decimals and a comma), the unused bytes are
zero, and one ``bytes.translate`` drops them. The numbers parse to exactly the doubles that
``round(x, 6)`` gives (trailing zeros cut, one decimal always kept: ``0.5``, ``-3.0``), which is
what the records held before; values of 1,000 or more, NaN and infinity take the slow path.
"""

from __future__ import annotations

import numpy as np

# Output vectors and scores carry 6 decimals: float32 noise of the step is about 1e-6, and the
# shortest JSON form of a float32 widened to a double takes 17 digits, twice the bytes to encode and ship.
DECIMALS = 6
LIMIT = 1000.0  # the integer-digit table's size: larger values take the slow path


def _digits(width: int) -> np.ndarray:
    """ASCII digits of 0..999 zero-padded to ``width``, ``[1000, width]``."""
    values = np.arange(1000)
    return np.stack([(values // 10**k) % 10 + 48 for k in range(width - 1, -1, -1)], axis=1).astype(np.uint8)


def _cut_trailing_zeros(chars: np.ndarray, keep: int) -> np.ndarray:
    """Trailing '0' characters set to 0 (not written), the first ``keep`` characters kept."""
    chars = chars.copy()
    zero = np.ones(len(chars), dtype=bool)
    for k in range(chars.shape[1] - 1, keep - 1, -1):
        zero &= chars[:, k] == ord("0")
        chars[zero, k] = 0
    return chars


def _words(*placed: tuple[int, np.ndarray]) -> np.ndarray:
    """uint64 words of 1000 rows of characters, each ``(first byte, [1000, n] chars)``."""
    out = np.zeros((1000, 8), dtype=np.uint8)
    for start, chars in placed:
        out[:, start : start + chars.shape[1]] = chars
    return out.view("<u8").ravel()


_D3 = _digits(3)
_LEADING_ZEROS = np.cumprod(np.uint8(ord("0")) == _D3, axis=1).astype(bool)
_POINT = np.full((1000, 1), ord("."), dtype=np.uint8)
# word 0: byte 0 the sign, bytes 1-3 the integer part without leading zeros
_INTEGER = _words((1, np.where(_LEADING_ZEROS[:, :2], 0, _D3[:, :2])), (3, _D3[:, 2:]))
# word 1: '.', decimals 1-3 (bytes 1-3), decimals 4-6 (bytes 4-6), the comma (byte 7)
_HIGH = _words((0, _POINT), (1, _D3))
_HIGH_LAST = _words((0, _POINT), (1, _cut_trailing_zeros(_D3, keep=1)))  # when decimals 4-6 are zeros
_LOW = _words((4, _cut_trailing_zeros(_D3, keep=0)))
_MINUS = np.uint64(ord("-"))
_COMMA = np.uint64(ord(",")) << np.uint64(56)


def json_rows(values: np.ndarray) -> list[bytes] | None:
    """For each row of ``values`` (2-D), its numbers rounded to 6 decimals and joined by commas,
    as the inside of a JSON array; None when a value is NaN, infinite or of 1,000 or more."""
    x = np.asarray(values, dtype=np.float64)
    rows, cols = x.shape
    if not cols:
        return [b""] * rows
    scaled = np.rint(x * 10.0**DECIMALS)  # what round(x, 6) rounds, before it divides
    magnitude = np.abs(scaled)
    if not (magnitude < LIMIT * 10**DECIMALS).all():
        return None
    integer, fraction = np.divmod(magnitude.astype(np.int64), 10**DECIMALS)
    high, low = np.divmod(fraction, 1000)
    words = np.empty((rows, cols, 2), dtype="<u8")
    first = _INTEGER[integer]
    first[scaled < 0] |= _MINUS
    words[..., 0] = first
    words[..., 1] = np.where(low == 0, _HIGH_LAST[high], _HIGH[high] | _LOW[low]) | _COMMA
    words[:, -1, 1] ^= _COMMA  # no comma after a row's last number
    chars = words.view(np.uint8).reshape(rows, -1)
    ends = np.cumsum(np.count_nonzero(chars, axis=1)).tolist()
    text = chars.tobytes().translate(None, b"\0")
    return [text[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]
