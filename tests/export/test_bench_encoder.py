"""The encoder benchmark's plumbing on a tiny real encoder (its figures are printed, not asserted)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from export.bench_encoder import encoder_flops, format_table, load_texts, run_benchmark, targets

BACKENDS = {"torch", "ort-fp32", "ort-optimized", "ort-int8"}


def test_report_covers_every_backend_and_batch(tiny_encoder_dir: Path) -> None:
    texts = ["short", "a somewhat longer comment about a guitar strap", "", "mid length text here"] * 3
    report = run_benchmark(texts, [1, 4], encoder_path=str(tiny_encoder_dir), threads=1, n_rounds=2)
    assert {(r["backend"], r["batch"]) for r in report["results"]} >= {(b, n) for b in BACKENDS for n in (1, 4)}
    assert all(r["sentences_per_s"] > 0 and len(r["rounds"]) == 2 for r in report["results"])
    assert report["accuracy"]["ort-fp32_vs_torch_max_abs_diff"] <= 1e-4
    assert 0.9 <= report["accuracy"]["ort-int8_cosine_to_fp32"]["mean"] <= 1.0 + 1e-6
    assert report["context"]["texts"] == 12 and report["context"]["threads"] == 1
    assert set(targets(report)) == {"ort fp32 >= 3x torch at batch 1"}  # no batch 32 measured
    assert set(report["context"]["matmul_gflops"]) == {"torch", "onnxruntime"}
    assert all(v > 0 for v in report["context"]["matmul_gflops"].values())
    assert all(r["gflops"] > 0 for r in report["results"]) and "of mm" in format_table(report)
    table = format_table(report)
    assert table.count("\n") == len(report["results"]) and "ort-int8" in table
    json.dumps(report)  # the CLI writes it as JSON


def test_texts_from_reviews_plain_text_or_generated(tmp_path: Path) -> None:
    reviews = tmp_path / "reviews.json.gz"
    with gzip.open(reviews, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"summary": "Nice", "reviewText": "Works well."}) + "\n")
        f.write(json.dumps({"summary": "", "reviewText": ""}) + "\n")  # no text: skipped
        f.write(json.dumps({"summary": "Loud", "reviewText": "Too loud."}) + "\n")
    assert load_texts(reviews, 10) == (["Nice. Works well.", "Loud. Too loud."], str(reviews))
    plain = tmp_path / "comments.txt"
    plain.write_text("one\n\ntwo\nthree\n")
    assert load_texts(plain, 2)[0] == ["one", "two"]
    generated, source = load_texts(None, 50, default=tmp_path / "missing.json.gz")
    assert len(generated) == 50 and all(generated) and source.startswith("generated")


def test_encoder_flops_match_torchs_count_of_the_model(tiny_encoder_dir: Path) -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import BertModel

    # eager attention: torch counts its matrix products (it has no count for the fused CPU kernel)
    model = BertModel.from_pretrained(tiny_encoder_dir, attn_implementation="eager", add_pooling_layer=False)
    for n in (5, 37):
        ids = torch.randint(1000, 2000, (1, n))
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
        assert encoder_flops(model.config, [n]) == counter.get_total_flops()
