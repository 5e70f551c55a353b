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


ML_100K = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "movielens-100k"


@pytest.fixture(scope="module")
def training_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Real data (the first 100 users of MovieLens 100K) when ../shared/data has it, else a synthetic stream."""
    from models.datasets import generate, read_movielens_100k, write_jsonl

    root = tmp_path_factory.mktemp("parity-data")
    if ML_100K.is_dir():
        data = read_movielens_100k(ML_100K / "u.data", ML_100K / "u.item")
        users = {str(u) for u in range(1, 101)}
        events, items = [e for e in data.events if e["user_id"] in users], data.items
    else:
        events, items, _ = generate(users=100, items=300, events=10_000, seed=3)
    write_jsonl(root / "events.jsonl", events)
    write_jsonl(root / "items.jsonl", items)
    return root / "events.jsonl", root / "items.jsonl"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trained_models_export_within_the_parity_bound(
    seed: int, training_files: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Trained weights reach scales an untrained model never shows (the bound is relative to them):
    models of the default size, trained with three seeds, all export."""
    from export.bundle import PARITY_RTOL, export_interest
    from models.train import TrainConfig, train_files

    out = tmp_path_factory.mktemp(f"trained-{seed}")
    cfg = TrainConfig(epochs=2, seed=seed, jobs=1)
    cache = tmp_path_factory.getbasetemp() / "parity-embeddings"
    train_files(*training_files, out / "ckpt", cfg=cfg, cache_dir=cache, progress=False)
    model = load_checkpoint(out / "ckpt").model
    _, facts = export_interest(model, out, opset=17)  # raises AtolError past the bound
    assert facts["step_max_rel_diff"] <= PARITY_RTOL and facts["item_tower_max_rel_diff"] <= PARITY_RTOL


def test_a_saturated_long_term_rate_exports_within_the_bound(tmp_path: Path) -> None:
    """A trained long-term path can all but stop moving (rate ~1e-9): the step then divides two tiny
    numbers, which only an exact logistic keeps equal in torch and ONNX Runtime (its Sigmoid kernel's
    absolute error made such a MovieLens model 0.1 off)."""
    from export.bundle import PARITY_RTOL, export_interest
    from models.interest_model import InterestModel, ModelConfig

    torch.manual_seed(0)
    model = InterestModel(ModelConfig(n_items=50, text_dim=32, members=1)).eval()
    with torch.no_grad():
        model.long_rate.bias.fill_(-20.0)
        model.long_in.weight.mul_(30.0)  # values far from the average: an error in rate / mass shows
    _, facts = export_interest(model, tmp_path, opset=17)
    assert facts["step_max_rel_diff"] <= PARITY_RTOL
