"""Comment text -> encoder inputs with the bundle's own tokenizer (``tokenizers``, no torch).

Texts are tokenized once without padding, ordered by length and cut into batches padded only
to each batch's longest text: review lengths vary a lot, and padding to ``max_length`` would
spend most of the encoder's time on padding tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer


class CommentTokenizer:
    def __init__(self, tokenizer_json: Path, max_length: int) -> None:
        self.tokenizer = Tokenizer.from_file(str(tokenizer_json))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
        self.max_length = max_length
        self.pad_id = self._pad_id(tokenizer_json.parent)

    def _pad_id(self, folder: Path) -> int:
        config = folder / "tokenizer_config.json"
        pad_token = json.loads(config.read_text(encoding="utf-8")).get("pad_token") if config.is_file() else None
        pad_id = self.tokenizer.token_to_id(pad_token) if isinstance(pad_token, str) else None
        return 0 if pad_id is None else pad_id

    def batches(self, texts: Sequence[str], batch_size: int) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """(row indices into ``texts``, {input_ids, attention_mask}) per batch, shortest texts first."""
        ids = [e.ids for e in self.tokenizer.encode_batch(list(texts))]
        order = np.argsort([len(x) for x in ids], kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(ids[r]) for r in rows)
            input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for i, r in enumerate(rows):
                input_ids[i, : len(ids[r])] = ids[r]
                mask[i, : len(ids[r])] = 1
            yield rows, {"input_ids": input_ids, "attention_mask": mask}
