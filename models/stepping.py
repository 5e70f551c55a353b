"""Feed event sequences to the model: padded event tensors for training windows, and the served
``step`` run one event at a time over many users at once (validation and evaluation)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from models.ensemble import Model
from models.sequences import Sequences, pad
from models.text_features import text_rows


def event_tensors(seqs: Sequences, index: np.ndarray, comments: torch.Tensor) -> dict[str, torch.Tensor]:
    """Model inputs for events ``index`` (any shape); item rows under ``items``."""
    return {
        "items": torch.from_numpy(seqs.item[index]),
        "event_type": torch.from_numpy(seqs.event_type[index]),
        "comment_emb": comments[torch.from_numpy(text_rows(seqs, index))],
        "has_text": torch.from_numpy((seqs.text_row[index] >= 0).astype(np.float32)),
        "rating": torch.from_numpy(seqs.rating[index]),
        "gap_s": torch.from_numpy(seqs.gap_s[index]),
    }


class UserVectors(NamedTuple):
    interest: torch.Tensor
    long_term: torch.Tensor
    short_term: torch.Tensor
    state: torch.Tensor


@torch.no_grad()
def final_vectors(
    model: Model,
    seqs: Sequences,
    starts: np.ndarray,
    ends: np.ndarray,
    item_vecs: torch.Tensor,
    comments: torch.Tensor,
    batch_users: int = 1024,
    every: torch.Tensor | None = None,
) -> UserVectors:
    """Interest, long- and short-term vectors ``[n, D]`` and the state ``[n, S]`` after stepping
    through events ``starts[i]:ends[i]`` (one user each) with ``model.step``, exactly as a worker
    would, batched over users. ``item_vecs`` is the item table the events' item rows index. With
    ``every`` (``[events, D]``), row ``e`` also receives the interest right after event ``e``."""
    model.eval()
    lengths = ends - starts
    width = (model.config.vector_dim,) * 3 + (model.config.state_dim,)
    out = [torch.zeros(len(starts), w) for w in width]
    order = np.argsort(-lengths, kind="stable")  # longest first: the users still active are a prefix
    for lo in range(0, len(order), batch_users):
        rows = order[lo : lo + batch_users]
        batch = pad(starts[rows], ends[rows])
        active = batch.valid.sum(axis=0)  # users with an event at step t (non-increasing)
        vectors = [torch.zeros(len(rows), w) for w in width]
        state = vectors[-1]
        for t in range(batch.index.shape[1]):
            n = int(active[t])
            ev = event_tensors(seqs, batch.index[:n, t], comments)
            state[:n], *new_vectors = model.step(
                state[:n], item_vecs[ev["items"]], ev["event_type"], ev["comment_emb"], ev["has_text"], ev["rating"],
                ev["gap_s"],
            )  # fmt: skip
            for full, new in zip(vectors[:-1], new_vectors, strict=True):
                full[:n] = new
            if every is not None:
                every[torch.from_numpy(batch.index[:n, t])] = new_vectors[0]
        for full, part in zip(out, vectors, strict=True):
            full[torch.from_numpy(rows)] = part
    return UserVectors(*out)
