"""``export_bundle``: a checkpoint directory -> a verified bundle directory (docs/model-interface.md).

Each graph is exported, then validated against torch on shapes other than the export sample's
(``ShapeError``/``AtolError``). The bundle is assembled in a hidden staging folder beside
``out_dir`` and renamed into place, so ``out_dir`` never holds half a bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

from export.exceptions import AtolError, ExportError
from export.integrity import file_entry, sign_bundle
from export.item_table import ItemPrecision, save_item_table
from export.manifest import MANIFEST, ItemTable, Manifest, TokenizerSpec, encode_manifest, format_for
from export.onnx_export import DEFAULT_OPSET, Parity, export_onnx, validate_onnx
from export.optimize import optimize_encoder, quantize_encoder
from export.signatures import ENCODER, ENCODER_INT8, ITEM_TOWER, STEP, encoder_spec, item_tower_spec, step_spec
from models.checkpoint import Checkpoint, load_checkpoint
from models.comment_encoder import CommentEncoder
from models.datasets.jsonl import load_event_columns
from models.ensemble import Model
from models.exceptions import ModelError

# Parity bound of every exported graph, relative to each output's scale (``validate_onnx``). Measured over
# 36 trained models (MovieLens, MovieLens 100K, Amazon; 1-4 members; several seeds and settings), each on
# 6 x 40 stepped events of 64 users on items of its own table: at most 8.4e-7 of the scale (8.6e-6
# absolute; scales up to 34), so 1e-4 leaves two orders of magnitude. Before the long-term rate's
# logistic was written out (``InterestModel.long_inputs``), ONNX Runtime's Sigmoid kernel put MovieLens
# models 0.004-0.26 off (up to 3.5e-2 of the scale): the bound catches that kind of fault.
PARITY_RTOL = 1e-4
# a guard against a broken quantization on the short validation texts (the hardest case for int8:
# few tokens to average); the 0.99 target on real review text is checked by the tests and the bench
INT8_MIN_MEAN_COSINE = 0.98
ITEMS_NPY = "items.npy"
ITEMS_JSON = "items.json"
POPULARITY_NPY = "popularity.npy"
TOKENIZER_DIR = "tokenizer"
CHECKPOINT_DIR = "checkpoint"

# export sample and fresh validation texts: different batch sizes and lengths, empty, over-long
SAMPLE_TEXTS = ["great strings", "the tuner broke after a week and support never answered my emails"]
VALIDATION_TEXTS = [
    ["", "ok", "these picks grip well even with sweaty hands, and the medium gauge suits strumming"],
    ["a cable that hums " * 200],
    ["solid stand", "cheap but fine", "loud", "bright tone, stays in tune, would buy again", "meh"],
]


class StepGraph(nn.Module):
    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.step(*inputs)


class ItemTowerGraph(nn.Module):
    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = model

    def forward(self, text_emb: torch.Tensor) -> torch.Tensor:
        return self.model.item_tower(text_emb)


@torch.inference_mode()
def _events(model: Model, batch: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Random events on items of the model's own table, so the values reach a trained model's scale."""
    cfg = model.config
    items = model.item_vectors()
    return [
        items[torch.randint(0, len(items), (batch,), generator=gen)],
        torch.randint(0, cfg.n_event_types, (batch,), generator=gen),
        torch.nn.functional.normalize(torch.randn(batch, cfg.text_dim, generator=gen), dim=-1),
        torch.randint(0, 2, (batch,), generator=gen).float(),
        torch.randint(-1, 6, (batch,), generator=gen).float(),
        torch.rand(batch, generator=gen) * 1e6,
    ]


@torch.inference_mode()
def _step_inputs(model: Model, batch: int, seed: int) -> list[torch.Tensor]:
    """A random event for users whose state came from a few earlier events (a reachable state)."""
    gen = torch.Generator().manual_seed(seed)
    state = model.initial_state(batch)
    for _ in range(seed % 4):
        state = model.step(state, *_events(model, batch, gen))[0]
    return [state, *_events(model, batch, gen)]


def _encoder_cases(encoder: CommentEncoder, groups: list[list[str]]) -> list[list[torch.Tensor]]:
    return [list(encoder.tokenize(texts).values()) for texts in groups]


def _check_int8(fp32: Path, int8: Path, cases: list[list[torch.Tensor]]) -> dict[str, float]:
    import onnxruntime as ort

    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (fp32, int8)]
    cosines = []
    for ids, mask in cases:
        feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        ref, got = (s.run(None, feeds)[0] for s in sessions)
        cosines.append((ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1))
    cos = np.concatenate(cosines)
    if not cos.mean() >= INT8_MIN_MEAN_COSINE:
        raise AtolError(f"int8 encoder: mean cosine to fp32 {cos.mean():.4f} < {INT8_MIN_MEAN_COSINE}")
    return {"int8_cosine_mean": round(float(cos.mean()), 5), "int8_cosine_min": round(float(cos.min()), 5)}


def export_encoder(encoder: CommentEncoder, path: Path, opset: int = DEFAULT_OPSET) -> Parity:
    """encoder.onnx at ``path``, validated against torch; returns the largest differences seen."""
    encoder.backbone.set_attn_implementation("eager")  # the attention pattern onnxruntime fuses
    spec = encoder_spec(encoder.dim)
    export_onnx(encoder, list(encoder.tokenize(SAMPLE_TEXTS).values()), spec, path, opset)
    return validate_onnx(path, spec, encoder, _encoder_cases(encoder, VALIDATION_TEXTS), PARITY_RTOL)


def _export_encoder(
    encoder: CommentEncoder, stage: Path, opset: int, optimize: bool, int8: bool
) -> tuple[dict[str, object], dict[str, object]]:
    """encoder.onnx (and encoder.int8.onnx); returns (graph specs, export facts)."""
    spec = encoder_spec(encoder.dim)
    path = stage / spec.file
    facts: dict[str, object] = {"optimized": optimize, **parity_facts("encoder", export_encoder(encoder, path, opset))}
    cases = _encoder_cases(encoder, VALIDATION_TEXTS)
    if optimize:
        cfg = encoder.backbone.config
        facts["fusions"] = optimize_encoder(path, path, cfg.num_attention_heads, cfg.hidden_size)
        facts |= parity_facts("encoder", validate_onnx(path, spec, encoder, cases, PARITY_RTOL))
    graphs: dict[str, object] = {ENCODER: spec}
    if int8:
        spec8 = encoder_spec(encoder.dim, ENCODER_INT8)
        facts["int8"] = quantize_encoder(path, stage / spec8.file)
        facts.update(_check_int8(path, stage / spec8.file, cases))
        graphs[ENCODER_INT8] = spec8
    return graphs, facts


def export_interest(model: Model, stage: Path, opset: int) -> tuple[dict[str, object], dict[str, object]]:
    """step.onnx and item_tower.onnx; returns (graph specs, export facts)."""
    cfg = model.config
    step, tower = StepGraph(model), ItemTowerGraph(model)
    step_sig = step_spec(cfg.state_dim, cfg.vector_dim, cfg.text_dim)
    tower_sig = item_tower_spec(cfg.text_dim, cfg.vector_dim)
    export_onnx(step, _step_inputs(model, 2, seed=0), step_sig, stage / step_sig.file, opset)
    export_onnx(tower, [torch.zeros(2, cfg.text_dim)], tower_sig, stage / tower_sig.file, opset)
    step_cases = [_step_inputs(model, b, seed=b) for b in (1, 5, 33)]
    tower_cases = [[torch.nn.functional.normalize(torch.randn(n, cfg.text_dim), dim=-1)] for n in (1, 7)]
    facts = {
        **parity_facts("step", validate_onnx(stage / step_sig.file, step_sig, step, step_cases, PARITY_RTOL)),
        **parity_facts("item_tower", validate_onnx(stage / tower_sig.file, tower_sig, tower, tower_cases, PARITY_RTOL)),
    }
    return {STEP: step_sig, ITEM_TOWER: tower_sig}, facts


def parity_facts(graph: str, parity: Parity) -> dict[str, float]:
    return {f"{graph}_max_abs_diff": parity.max_abs_diff, f"{graph}_max_rel_diff": parity.max_rel_diff}


def item_popularity(ckpt: Checkpoint) -> np.ndarray | None:
    """[n_items] float32: the training events of each item (up to the newest one training saw), from the
    events file the checkpoint was trained on; None when that file is gone (workers then order cold
    starts by trending counts alone)."""
    data = ckpt.history.get("data") or {}
    events = data.get("events")
    if not events or not Path(events).is_file():
        return None
    columns = load_event_columns(events)
    until = data.get("trained_until")
    items = columns.item_id if until is None else columns.item_id[columns.ts <= until]
    row = ckpt.item_index()
    rows = np.fromiter((row.get(i, -1) for i in items), dtype=np.int64, count=len(items))
    return np.bincount(rows[rows >= 0], minlength=len(ckpt.item_ids)).astype(np.float32)


def _files(stage: Path) -> dict[str, object]:
    paths = sorted(p for p in stage.rglob("*") if p.is_file())
    return {p.relative_to(stage).as_posix(): file_entry(p) for p in paths}


def export_bundle(
    checkpoint_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    int8: bool = False,
    opset: int = DEFAULT_OPSET,
    optimize: bool = False,
    name: str = "interest-stream",
    parent_version: str | None = None,
    signing_key: str | None = None,
    item_precision: ItemPrecision = "auto",
) -> Manifest:
    """Export the checkpoint at ``checkpoint_dir`` as a bundle in ``out_dir`` (new or empty); the item
    table in ``item_precision`` (auto: float16 for large catalogs, ``export.item_table``).

    ``parent_version`` defaults to the checkpoint history's ``parent_version`` (set by fine-tuning).
    """
    ckpt_dir, out = Path(checkpoint_dir), Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} already exists and is not empty; choose a new --out directory")
    try:
        ckpt = load_checkpoint(ckpt_dir)
        cfg = ckpt.config
        encoder = CommentEncoder.from_pretrained(cfg.encoder_path or None, max_length=cfg.encoder_max_length)
    except (ModelError, FileNotFoundError) as exc:
        raise ExportError(f"cannot export {ckpt_dir}: {exc}") from None
    if encoder.dim != cfg.text_dim:
        raise ExportError(f"encoder {encoder.path} gives {encoder.dim}-d vectors, the model expects {cfg.text_dim}")

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    try:
        graphs, facts = _export_encoder(encoder, stage, opset, optimize, int8)

        step_graphs, step_facts = export_interest(ckpt.model, stage, opset)
        graphs.update(step_graphs)
        facts.update(step_facts)

        with torch.inference_mode():
            item_dtype = save_item_table(stage / ITEMS_NPY, ckpt.model.item_vectors().float().numpy(), item_precision)
        (stage / ITEMS_JSON).write_text(json.dumps(ckpt.item_ids) + "\n", encoding="utf-8")
        popularity = item_popularity(ckpt)
        if popularity is not None:
            np.save(stage / POPULARITY_NPY, popularity)
        tokenizer_files = encoder.tokenizer.save_pretrained(str(stage / TOKENIZER_DIR))
        (stage / CHECKPOINT_DIR).mkdir()
        for path in sorted(ckpt_dir.iterdir()):
            if path.is_file() and not path.is_symlink():
                shutil.copyfile(path, stage / CHECKPOINT_DIR / path.name)

        files = _files(stage)
        created = datetime.now(UTC)
        digest = hashlib.sha256("".join(f"{k}:{v.sha256}\n" for k, v in files.items()).encode()).hexdigest()
        manifest = Manifest(
            format=format_for(item_dtype),
            name=name,
            version=f"{created:%Y%m%dT%H%M%SZ}-{digest[:8]}",
            parent_version=parent_version or ckpt.history.get("parent_version"),
            created_at=created.isoformat(timespec="seconds"),
            text_dim=cfg.text_dim,
            dim=cfg.vector_dim,
            state_dim=cfg.state_dim,
            model_config=cfg.to_dict(),
            graphs=graphs,
            tokenizer=TokenizerSpec(
                files=tuple(sorted(Path(f).relative_to(stage).as_posix() for f in tokenizer_files)),
                max_length=encoder.max_length,
            ),
            item_table=ItemTable(
                vectors=ITEMS_NPY,
                ids=ITEMS_JSON,
                count=len(ckpt.item_ids),
                popularity=POPULARITY_NPY if popularity is not None else None,
                dtype=item_dtype,
            ),
            checkpoint=tuple(sorted(k for k in files if k.startswith(f"{CHECKPOINT_DIR}/"))),
            files=files,
            metrics=ckpt.metrics,
            export={"exporter": "torch.onnx (TorchScript)", "torch": str(torch.__version__), "opset": opset, **facts},
        )
        (stage / MANIFEST).write_bytes(encode_manifest(manifest))
        if signing_key:
            sign_bundle(stage, signing_key)
        os.replace(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return manifest
