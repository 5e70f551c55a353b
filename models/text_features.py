"""Text features: comment embeddings per event and item text embeddings, both through the cache.

Item text = the mean of what is known about an item, each part L2-normalised first:
- its catalog text (items JSONL ``text``), unless blank or just the item id (Amazon 5-core files
  have no titles, so the converter falls back to the asin);
- the comments written on it in *training* events only (``usable``), so no validation or test
  review leaks into any feature.
An item with neither gets a zero text embedding (its vector is then the id embedding alone).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.comment_encoder import CommentEncoder, EmbeddingCache
from models.sequences import Sequences


@dataclass(frozen=True)
class ItemTextSources:
    """How many items got each kind of text (for the report)."""

    catalog: int
    comments: int
    both: int
    none: int


def comment_table(seqs: Sequences, encoder: CommentEncoder, cache: EmbeddingCache, progress: bool) -> np.ndarray:
    """``[len(seqs.texts) + 1, T]``: row ``text_row`` of an event; the last row (zeros) for no text."""
    emb = cache.encode(encoder, seqs.texts, progress=progress) if seqs.texts else np.zeros((0, encoder.dim))
    return np.concatenate([emb, np.zeros((1, encoder.dim))]).astype(np.float32)


def text_rows(seqs: Sequences, index: np.ndarray | slice) -> np.ndarray:
    """Rows of ``comment_table`` for events ``index`` (events without text -> the zero row)."""
    rows = seqs.text_row[index]
    return np.where(rows < 0, len(seqs.texts), rows)


def normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def item_text_embeddings(
    item_ids: list[str],
    catalog: dict[str, str],
    seqs: Sequences,
    usable: np.ndarray,
    comments: np.ndarray,
    encoder: CommentEncoder,
    cache: EmbeddingCache,
    progress: bool = False,
) -> tuple[np.ndarray, ItemTextSources]:
    """``[len(item_ids), T]`` item text embeddings and a count of where they came from."""
    n, dim = len(item_ids), comments.shape[1]
    with_text = [i for i, item in enumerate(item_ids) if (catalog.get(item) or "").strip() not in ("", item)]
    catalog_emb = np.zeros((n, dim), dtype=np.float32)
    if with_text:
        texts = [catalog[item_ids[i]] for i in with_text]
        catalog_emb[with_text] = cache.encode(encoder, texts, progress=progress)

    commented = usable & (seqs.text_row >= 0)
    comment_sum = np.zeros((n, dim), dtype=np.float32)
    np.add.at(comment_sum, seqs.item[commented], comments[seqs.text_row[commented]])
    comment_emb = normalise(comment_sum)

    has_catalog = np.linalg.norm(catalog_emb, axis=1) > 0
    has_comments = np.linalg.norm(comment_emb, axis=1) > 0
    combined = normalise(catalog_emb + comment_emb)
    sources = ItemTextSources(
        catalog=int((has_catalog & ~has_comments).sum()),
        comments=int((has_comments & ~has_catalog).sum()),
        both=int((has_catalog & has_comments).sum()),
        none=int((~has_catalog & ~has_comments).sum()),
    )
    return combined.astype(np.float32), sources
