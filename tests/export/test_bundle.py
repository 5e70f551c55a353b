"""export_bundle: what a bundle holds, and how export refuses bad targets without leaving debris."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from export.bundle import export_bundle
from export.exceptions import ExportError
from export.integrity import sha256_file, verify_bundle
from export.manifest import MANIFEST, SIGNATURE


def test_manifest_describes_every_file(tiny_bundle: Path, tiny_checkpoint: Path) -> None:
    manifest = verify_bundle(tiny_bundle)
    on_disk = {p.relative_to(tiny_bundle).as_posix() for p in tiny_bundle.rglob("*") if p.is_file()}
    assert set(manifest.files) == on_disk - {MANIFEST}
    for name, entry in manifest.files.items():
        assert entry.sha256 == sha256_file(tiny_bundle / name)
        assert entry.size == (tiny_bundle / name).stat().st_size
    assert set(manifest.graphs) == {"encoder", "encoder_int8", "step", "item_tower"}
    assert [t.name for t in manifest.graphs["step"].inputs] == [
        "state", "item_vec", "event_type", "comment_emb", "has_text", "rating", "gap_s",
    ]  # fmt: skip
    # two tiny members side by side: vectors 2 x 16, state 2 x (2 x 32 + 2 x 16)
    assert manifest.graphs["step"].outputs[0].shape == ("batch", 192)
    assert (manifest.text_dim, manifest.dim, manifest.state_dim) == (32, 32, 192)
    assert manifest.model_config["members"] == 2
    assert "tokenizer/tokenizer.json" in manifest.tokenizer.files and manifest.tokenizer.max_length == 128
    assert manifest.item_table.count == 20 and manifest.model_config["n_items"] == 20
    assert manifest.metrics == {"hr@10": 0.125, "ndcg@10": 0.0625}
    assert manifest.parent_version is None and manifest.created_at.endswith("+00:00")
    assert manifest.export["opset"] == 17 and manifest.export["step_max_abs_diff"] <= 1e-4
    # the torch checkpoint travels with the bundle, byte for byte
    for name in ("config.json", "model.pt", "items.json", "item_text_emb.npy", "metrics.json", "history.json"):
        assert f"checkpoint/{name}" in manifest.checkpoint
        assert (tiny_bundle / "checkpoint" / name).read_bytes() == (tiny_checkpoint / name).read_bytes()


def test_refuses_non_empty_target_and_leaves_no_debris(tiny_checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    with pytest.raises(ExportError, match="not empty"):
        export_bundle(tiny_checkpoint, tmp_path / "taken")
    with pytest.raises(ExportError, match="cannot export"):
        export_bundle(tmp_path / "taken", tmp_path / "out")  # not a checkpoint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_broken_encoder_path_is_an_export_error(tiny_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for f in tiny_checkpoint.iterdir():
        (ckpt / f.name).write_bytes(f.read_bytes())
    config = json.loads((ckpt / "config.json").read_text())
    config["encoder_path"] = str(tmp_path / "no-such-encoder")
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match="no-such-encoder"):
        export_bundle(ckpt, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_signed_export_with_parent(tiny_checkpoint: Path, tmp_path: Path) -> None:
    manifest = export_bundle(
        tiny_checkpoint, tmp_path / "b", parent_version="20260101T000000Z-abcdef12", signing_key="k", opset=18
    )
    assert (tmp_path / "b" / SIGNATURE).is_file()
    assert verify_bundle(tmp_path / "b", "k") == manifest
    assert manifest.parent_version == "20260101T000000Z-abcdef12" and manifest.export["opset"] == 18
    assert "encoder_int8" not in manifest.graphs


def test_optimized_int8_export_loads_and_matches(tiny_checkpoint: Path, tiny_bundle: Path, tmp_path: Path) -> None:
    from export.runtime import RuntimeOptions, load_runtime

    manifest = export_bundle(tiny_checkpoint, tmp_path / "opt", optimize=True, int8=True)
    assert manifest.export["optimized"] and manifest.export["fusions"]
    assert manifest.export["encoder_max_abs_diff"] <= 1e-4
    texts = ["fused attention", "", "a longer sentence to give the attention something to do " * 5]
    fp32 = RuntimeOptions(encoder_precision="fp32")
    optimized, plain = load_runtime(tmp_path / "opt", fp32), load_runtime(tiny_bundle, fp32)
    assert abs(optimized.encode(texts) - plain.encode(texts)).max() <= 1e-4
    assert load_runtime(tmp_path / "opt").encode(texts).shape == (3, 32)  # int8 of the fused graph


def test_a_float16_item_table_is_half_the_bytes_and_served_as_float32(
    tiny_checkpoint: Path, tiny_bundle: Path, tmp_path: Path
) -> None:
    import numpy as np

    from export.exceptions import ManifestError
    from export.item_table import FLOAT16_ITEMS_FROM, save_item_table, stored_dtype
    from export.runtime import load_runtime

    assert stored_dtype(FLOAT16_ITEMS_FROM - 1) == "float32" and stored_dtype(FLOAT16_ITEMS_FROM) == "float16"
    assert stored_dtype(10, "float16") == "float16" and stored_dtype(10**7, "float32") == "float32"
    with pytest.raises(ExportError, match="values that float16 cannot"):  # past 65,504: infinite
        save_item_table(tmp_path / "big.npy", np.full((2, 3), 1e5, dtype=np.float32), "float16")
    manifest = export_bundle(tiny_checkpoint, tmp_path / "half", item_precision="float16")
    assert manifest.item_table.dtype == "float16" and manifest.format == 2  # workers before float16 refuse it
    assert verify_bundle(tmp_path / "half").item_table.dtype == "float16"
    full = load_runtime(tiny_bundle).item_matrix
    half = load_runtime(tmp_path / "half").item_matrix
    assert half.dtype == np.float32 and half.shape == full.shape
    assert np.array_equal(half, full.astype(np.float16).astype(np.float32))
    assert (tmp_path / "half" / "items.npy").stat().st_size < (tiny_bundle / "items.npy").stat().st_size
    # a table stored otherwise than its manifest says is refused
    np.save(tmp_path / "half" / "items.npy", full)
    raw = json.loads((tmp_path / "half" / MANIFEST).read_text())
    raw["files"]["items.npy"] = {"sha256": sha256_file(tmp_path / "half" / "items.npy"),
                                 "size": (tmp_path / "half" / "items.npy").stat().st_size}  # fmt: skip
    (tmp_path / "half" / MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match=r"items.npy is float32 .* expected float16"):
        load_runtime(tmp_path / "half")


def test_validation_raises_typed_errors(tiny_bundle: Path, tiny_checkpoint: Path) -> None:
    import torch

    from export.bundle import ItemTowerGraph
    from export.exceptions import AtolError, ShapeError
    from export.onnx_export import validate_onnx
    from export.signatures import TensorSpec, item_tower_spec
    from models.checkpoint import load_checkpoint

    tower = ItemTowerGraph(load_checkpoint(tiny_checkpoint).model)
    spec = item_tower_spec(32, 32)
    cases = [[torch.randn(3, 32)]]
    parity = validate_onnx(tiny_bundle / spec.file, spec, tower, cases, 1e-4)
    assert parity.max_rel_diff <= parity.max_abs_diff <= 1e-4
    renamed = type(spec)(spec.file, spec.inputs, (TensorSpec("vector", "float32", ("items", 32)),))
    with pytest.raises(ShapeError, match="vector"):
        validate_onnx(tiny_bundle / spec.file, renamed, tower, cases, 1e-4)
    with torch.no_grad():
        tower.model.members[1].item_text[0].bias.add_(0.5)  # torch now disagrees with the exported graph
    with pytest.raises(AtolError, match="item_vec differs"):
        validate_onnx(tiny_bundle / spec.file, spec, tower, cases, 1e-4)


def test_the_bundle_carries_each_items_training_events_when_the_training_file_is_there(
    tiny_bundle: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from export.runtime import load_runtime

    assert verify_bundle(tiny_bundle).item_table.popularity is None  # trained from a file gone since: none
    assert load_runtime(tiny_bundle).item_popularity is None
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for f in tiny_checkpoint.iterdir():
        (ckpt / f.name).write_bytes(f.read_bytes())
    events = tmp_path / "events.jsonl"
    picks = ["item-3"] * 3 + ["item-0"] + ["item-7"] * 2 + ["item-9"] + ["not-in-the-model"]
    ts = [1, 2, 3, 4, 5, 6, 99, 7]  # item-9's event is newer than training saw
    events.write_text("".join(
        json.dumps({"event_id": f"e{n}", "user_id": "u", "item_id": item, "type": "click", "ts": t}) + "\n"
        for n, (item, t) in enumerate(zip(picks, ts, strict=True))
    ))  # fmt: skip
    (ckpt / "history.json").write_text(json.dumps({"data": {"events": str(events), "trained_until": 50}}))
    manifest = export_bundle(ckpt, tmp_path / "bundle")
    assert manifest.item_table.popularity == "popularity.npy" and "popularity.npy" in manifest.files
    counts = load_runtime(tmp_path / "bundle").item_popularity
    assert counts.tolist() == [1, 0, 0, 3, 0, 0, 0, 2, *[0] * 12]
