"""The evaluation report of a model of several members: each member's curve and training line."""

from __future__ import annotations

from models.report import markdown, member_histories, metric_rows, write_png, write_report


def _member(best: int, fit: str) -> dict:
    epochs = [{"epoch": e, "loss": 5.0 - e, "val_ndcg@10": 0.01 * e, "val_hr@10": 0.02 * e} for e in (1, 2, 3)]
    return {"epochs": epochs, "best_epoch": best, "best_val_ndcg@10": 0.01 * best, "final_fit": fit,
            "refit_epochs": [{"epoch": 4, "loss": 1.5}]}  # fmt: skip


def test_report_shows_every_member(tmp_path) -> None:
    history = {"members": [_member(3, "refit"), _member(2, "refit")], "best_val_ndcg@10": 0.0425}
    result = {"hr@10": 0.2, "ndcg@10": 0.1, "users": 10, "items": 50,
              "baselines": {"popularity": {"hr@10": 0.1, "ndcg@10": 0.05}}}  # fmt: skip
    rows = metric_rows(result, {})
    text = markdown(result, {}, history, rows)
    assert "2 members trained apart" in text and "validation NDCG@10 of the ensemble 0.0425" in text
    assert "  - member 1: best epoch 3 of 3, validation NDCG@10 0.0300; then refit: 1 epochs" in text
    assert "  - member 2: best epoch 2 of 3, validation NDCG@10 0.0200" in text
    write_png(tmp_path / "report.png", history, rows)
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_a_single_model_is_its_own_member() -> None:
    single = _member(2, "retrain")
    assert member_histories(single) == [single] and member_histories({}) == []
    text = markdown({"hr@10": 0.2, "ndcg@10": 0.1, "users": 1, "items": 1, "baselines": {}}, {}, single, [])
    assert "- best epoch 2 of 3, validation NDCG@10 0.0200; then retrain: 1 epochs" in text and "member" not in text


def test_training_writes_the_curve_half(tmp_path) -> None:
    history = {"members": [_member(3, "refit"), _member(2, "refit")], "best_val_ndcg@10": 0.0425}
    png, md = write_report(tmp_path, history)
    text = md.read_text()
    assert "Not evaluated yet: `istream evaluate` adds" in text and "2 members trained apart" in text
    assert "HR@10 | NDCG@10" not in text and png.stat().st_size > 10_000


def test_evaluation_adds_buckets_and_prequential(tmp_path) -> None:
    metrics = {"model": {"hr@10": 0.3, "ndcg@10": 0.2}, "last-item transition": {"hr@10": 0.1, "ndcg@10": 0.05}}
    buckets = [{"bucket": "1-2", "n": 4, **metrics}, {"bucket": ">50", "n": 0, **metrics}]
    result = {"hr@10": 0.2, "ndcg@10": 0.1, "users": 10, "items": 50, "buckets": buckets,
              "baselines": {"last-item transition": metrics["last-item transition"]},
              "prequential": {"since": 5, "predictions": 4, **metrics, "buckets": buckets}}  # fmt: skip
    _, md = write_report(tmp_path, _member(2, "refit"), result, {})
    text = md.read_text()
    assert "| events before | n | model HR@10 / NDCG@10 | last-item transition HR@10 / NDCG@10 |" in text
    assert "| 1-2 | 4 | 0.3000 / 0.2000 | 0.1000 / 0.0500 |" in text
    assert "4 predictions of runs from epoch ms 5 on" in text and "| model | 0.3000 | 0.2000 |" in text
