"""Export fixtures: real checkpoints of the tiny interest model and bundles exported from them.

Session-scoped
    ``tiny_encoder_dir``   a 2-layer, 32-wide BERT (random weights) with MiniLM's tokenizer, saved
                           as a local Hugging Face directory: a real encoder that exports in a second.
    ``tiny_checkpoint``    tiny interest model (untrained; 2 members, as the default model) over
                           ``tiny_encoder_dir``; 20 items.
    ``tiny_bundle``        ``tiny_checkpoint`` exported with ``--int8``.
    ``minilm_checkpoint``  tiny interest model over the real all-MiniLM-L6-v2 (T = 384).
    ``minilm_bundle``      ``minilm_checkpoint`` exported with ``--int8`` (done once per run: ~10 s).
    ``review_texts``       Amazon review texts from ../shared/data when present, plus synthetic
                           strings (empty, one word, very long, non-ASCII).
Per test
    ``bundle_copy``        a writable copy of ``tiny_bundle`` (for tampering).
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
AMAZON_REVIEWS = SHARED_DATA / "amazon-musical-instruments-5core" / "Musical_Instruments_5.json.gz"
N_ITEMS = 20

SYNTHETIC_TEXTS = [
    "",
    "ok",
    "Great strings, bright tone and they stay in tune for weeks.",
    "Der Klang ist wärmer als erwartet — très bien! 🎸",
    "buzz " * 700,
]


def _write_checkpoint(out: Path, text_dim: int, encoder_path: str) -> Path:
    import torch

    from models.checkpoint import save_checkpoint, save_metrics
    from models.ensemble import make_model, members_of
    from models.interest_model import ModelConfig

    torch.manual_seed(0)
    model = make_model(ModelConfig.tiny(n_items=N_ITEMS, text_dim=text_dim, encoder_path=encoder_path, members=2))
    text = torch.nn.functional.normalize(torch.randn(N_ITEMS, text_dim), dim=-1)
    for member in members_of(model):
        member.item_text_emb.copy_(text)
    save_checkpoint(out, model.eval(), [f"item-{i}" for i in range(N_ITEMS)], history={"epochs": 0})
    save_metrics(out, {"hr@10": 0.125, "ndcg@10": 0.0625})
    return out


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from models.comment_encoder import default_encoder_path

    out = tmp_path_factory.mktemp("tiny-encoder")
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    BertModel(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(default_encoder_path(), local_files_only=True).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    return _write_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", 32, str(tiny_encoder_dir))


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    from export.bundle import export_bundle

    out = tmp_path_factory.mktemp("tiny-bundle") / "bundle"
    export_bundle(tiny_checkpoint, out, int8=True)
    return out


@pytest.fixture(scope="session")
def minilm_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.comment_encoder import default_encoder_path

    return _write_checkpoint(tmp_path_factory.mktemp("minilm") / "ckpt", 384, default_encoder_path())


@pytest.fixture(scope="session")
def minilm_bundle(tmp_path_factory: pytest.TempPathFactory, minilm_checkpoint: Path) -> Path:
    from export.bundle import export_bundle

    out = tmp_path_factory.mktemp("minilm-bundle") / "bundle"
    export_bundle(minilm_checkpoint, out, int8=True)
    return out


@pytest.fixture(scope="session")
def review_texts() -> list[str]:
    texts = list(SYNTHETIC_TEXTS)
    if AMAZON_REVIEWS.is_file():
        with gzip.open(AMAZON_REVIEWS, "rt", encoding="utf-8") as f:
            for _, line in zip(range(40), f, strict=False):
                texts.append(json.loads(line)["reviewText"])
    return texts


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
