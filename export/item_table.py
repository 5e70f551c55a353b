"""The bundle's item table on disk (``items.npy``): float32, or float16 for large catalogs.

A worker ranks in float32 (BLAS and faiss want it), so a float16 table is widened once at load. The
rounding is what float16 storage costs: exact top-10 over the rounded table found 0.9998 of float32's
top 10 on the MovieLens model's 9,742 items and 0.9993 on a million items (``istream bench index``,
docs/ranking.md), so catalogs from ``FLOAT16_ITEMS_FROM`` rows are stored that way by default and
smaller ones stay exact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from export.exceptions import ExportError, ManifestError

ItemPrecision = Literal["auto", "float32", "float16"]
ItemDtype = Literal["float32", "float16"]
# where half the bytes start to matter: 100,000 x 128 items are 51 MB in float32 (1M: 512 MB)
FLOAT16_ITEMS_FROM = 100_000


def stored_dtype(rows: int, precision: ItemPrecision = "auto") -> ItemDtype:
    if precision != "auto":
        return precision
    return "float16" if rows >= FLOAT16_ITEMS_FROM else "float32"


def save_item_table(path: Path, matrix: np.ndarray, precision: ItemPrecision = "auto") -> ItemDtype:
    """Write ``matrix`` [N, D] at ``path``; the dtype it is stored in. ``ExportError`` when a value does not
    fit it (float16 ends at 65,504: an infinite vector would rank as NaN)."""
    dtype = stored_dtype(len(matrix), precision)
    with np.errstate(over="ignore"):  # checked just below, with a message that says what to do
        stored = np.asarray(matrix, dtype=dtype)
    if not np.isfinite(stored).all():
        hint = "; export it with --item-precision float32" if dtype == "float16" else ""
        raise ExportError(f"the item table holds values that {dtype} cannot (infinite or NaN){hint}")
    np.save(path, stored)
    return dtype


def load_item_table(path: Path, dtype: ItemDtype, shape: tuple[int, int]) -> np.ndarray:
    """The table at ``path`` as float32 [N, D]; ``ManifestError`` unless it is stored as ``dtype`` in ``shape``."""
    stored = np.load(path, mmap_mode="r", allow_pickle=False)  # widened straight from the file's pages
    if stored.dtype != np.dtype(dtype) or stored.shape != shape:
        raise ManifestError(f"{path.name} is {stored.dtype} {stored.shape}, expected {dtype} {shape}")
    return np.array(stored, dtype=np.float32)
