"""ONNX (through the worker runtime) against torch: real MiniLM encoder, tiny interest model.

The bundle is exported once per run (``minilm_bundle``); inputs use batch sizes and lengths other
than the export sample's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from export.runtime import ModelRuntime, RuntimeOptions, load_runtime
from export.sessions import CPU, CUDA
from models.checkpoint import load_checkpoint
from models.comment_encoder import CommentEncoder

ATOL = 1e-4


@pytest.fixture(scope="module")
def fp32(minilm_bundle: Path) -> ModelRuntime:
    return load_runtime(minilm_bundle, RuntimeOptions(encoder_precision="fp32", encode_batch_size=16))


@pytest.fixture(scope="module")
def int8(minilm_bundle: Path) -> ModelRuntime:
    return load_runtime(minilm_bundle, RuntimeOptions(encoder_precision="int8", encode_batch_size=16))


@pytest.fixture(scope="module")
def torch_encoder(minilm_checkpoint: Path) -> CommentEncoder:
    cfg = load_checkpoint(minilm_checkpoint).config
    return CommentEncoder.from_pretrained(cfg.encoder_path, max_length=cfg.encoder_max_length)


def test_auto_precision_is_int8_on_cpu_and_fp32_on_cuda(
    minilm_bundle: Path, fp32: ModelRuntime, int8: ModelRuntime
) -> None:
    assert (fp32.encoder_graph, int8.encoder_graph) == ("encoder", "encoder_int8")
    auto = load_runtime(minilm_bundle)
    assert auto.encoder_graph == ("encoder" if auto.provider == CUDA else "encoder_int8")
    # a forced int8 encoder runs on the CPU even where the other graphs run on CUDA
    assert int8.encoder_provider == CPU


def test_encoder_fp32_matches_torch(fp32: ModelRuntime, torch_encoder: CommentEncoder, review_texts: list[str]) -> None:
    expected = torch_encoder.encode(review_texts, batch_size=7)  # other batches and padding than the runtime's
    got = fp32.encode(review_texts)
    assert got.shape == (len(review_texts), 384)
    assert np.abs(got - expected).max() <= ATOL


def test_encoder_int8_cosine(fp32: ModelRuntime, int8: ModelRuntime, review_texts: list[str]) -> None:
    """The issue's bound (mean cosine >= 0.99 to fp32) on sentences. Texts of a token or two ("",
    "ok") lose more to int8 (0.96-0.98, here and on an H200 machine's CPU), and how much depends on
    their batch-mates, since dynamic quantization scales activations per batch: before, the mean over
    all texts passed only when the Amazon reviews were there to outnumber them."""
    ref, got = fp32.encode(review_texts), int8.encode(review_texts)
    cosine = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    sentences = np.array([len(text.split()) >= 3 for text in review_texts])
    assert sentences.sum() >= 3 and cosine[sentences].mean() >= 0.99, cosine
    assert cosine.min() >= 0.95, cosine


def test_batching_does_not_change_embeddings(minilm_bundle: Path, fp32: ModelRuntime, review_texts: list[str]) -> None:
    one_by_one = load_runtime(minilm_bundle, RuntimeOptions(encoder_precision="fp32", encode_batch_size=1))
    assert np.abs(one_by_one.encode(review_texts[:12]) - fp32.encode(review_texts[:12])).max() <= ATOL
    assert fp32.encode([]).shape == (0, 384)


def test_empty_and_very_long_comments(fp32: ModelRuntime, torch_encoder: CommentEncoder) -> None:
    long = "the bridge pickup hums whenever the amp is close " * 400  # thousands of tokens
    emb = fp32.encode(["", long, long + " and a different ending"])
    assert np.isfinite(emb).all()
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.abs(emb[1] - emb[2]).max() <= ATOL  # truncated to the same first max_length tokens
    assert np.abs(emb - torch_encoder.encode(["", long, long + " x"])).max() <= ATOL


def _events(rng: np.random.Generator, runtime: ModelRuntime, users: int, comments: np.ndarray) -> list[np.ndarray]:
    has_text = (rng.random(users) < 0.5).astype(np.float32)
    rows = rng.integers(0, len(comments), users)
    return [
        runtime.item_matrix[rng.integers(0, len(runtime.item_matrix), users)],
        rng.integers(0, 6, users),
        comments[rows] * has_text[:, None],
        has_text,
        np.where(rng.random(users) < 0.5, rng.integers(1, 6, users), -1).astype(np.float32),
        (rng.exponential(3600.0, users) * (rng.random(users) < 0.9)).astype(np.float32),
    ]


def test_fifty_steps_match_torch(fp32: ModelRuntime, minilm_checkpoint: Path, review_texts: list[str]) -> None:
    model = load_checkpoint(minilm_checkpoint).model
    comments = fp32.encode(review_texts)
    rng = np.random.default_rng(7)
    users = 9  # not the export batch
    state_onnx = np.zeros((users, fp32.state_dim), dtype=np.float32)
    state_torch = torch.zeros(users, fp32.state_dim)
    worst = 0.0
    for _ in range(50):
        event = _events(rng, fp32, users, comments)
        out = fp32.step(state_onnx, *event)
        with torch.inference_mode():
            expected = model.step(state_torch, *(torch.from_numpy(np.asarray(x)) for x in event))
        for got, want in zip(out, expected, strict=True):
            worst = max(worst, float(np.abs(got - want.numpy()).max()))
        state_onnx, state_torch = out.new_state, expected[0]
    assert worst <= ATOL
    assert np.abs(state_onnx).max() > 0  # the state really moved


def test_item_table_and_tower_match_torch(fp32: ModelRuntime, minilm_checkpoint: Path) -> None:
    ckpt = load_checkpoint(minilm_checkpoint)
    with torch.inference_mode():
        table = ckpt.model.item_vectors().numpy()
        text = torch.nn.functional.normalize(torch.randn(11, 384), dim=-1)
        tower = ckpt.model.item_tower(text).numpy()
    assert fp32.item_ids == ckpt.item_ids
    assert np.array_equal(fp32.item_matrix, table)
    assert np.abs(fp32.item_vectors(text.numpy()) - tower).max() <= ATOL
    assert fp32.item_vectors(np.zeros((0, 384), dtype=np.float32)).shape == (0, fp32.dim)
