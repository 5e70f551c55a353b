"""The evaluation report next to a checkpoint: ``report.png`` (training curve, metrics vs baselines)
and ``report.md`` (the same figures as tables, plus what the run used)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt

PNG = "report.png"
MARKDOWN = "report.md"


def metric_rows(result: dict, extra: dict) -> list[tuple[str, float, float]]:
    rows = [("interest model (stepwise)", result["hr@10"], result["ndcg@10"])]
    rows += [(f"ablation: {name}", m["hr@10"], m["ndcg@10"]) for name, m in (extra.get("ablations") or {}).items()]
    rows += [(name, m["hr@10"], m["ndcg@10"]) for name, m in result["baselines"].items()]
    return rows


def final_fit(history: dict) -> str:
    if "final_fit" in history:
        return history["final_fit"]
    return "retrain" if history.get("train_config", {}).get("retrain") else "refit"  # checkpoints before auto


def member_histories(history: dict) -> list[dict]:
    """The training histories of a model's members (a single model's is its own)."""
    return history.get("members") or ([history] if history.get("epochs") else [])


def member_summary(h: dict) -> str:
    text = f"best epoch {h.get('best_epoch')} of {len(h.get('epochs', []))}, validation NDCG@10 "
    text += f"{h.get('best_val_ndcg@10', 0):.4f}"
    if h.get("refit_epochs"):
        text += f"; then {final_fit(h)}: {len(h['refit_epochs'])} epochs with the validation items as targets too"
        text += " (a fresh model)" if final_fit(h) == "retrain" else ""
    return text


def write_png(path: Path, history: dict, rows: list[tuple[str, float, float]]) -> None:
    fig, (curve, bars) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1, 1.3]})
    members = member_histories(history)
    if members:
        val = curve.twinx()
        for k, h in enumerate(members):
            tag, style = (f" (member {k + 1})" if len(members) > 1 else ""), ["-", "--", "-.", ":"][k % 4]
            x = [e["epoch"] for e in h["epochs"]]
            curve.plot(x, [e["loss"] for e in h["epochs"]], "o" + style, color="tab:blue", label=f"train loss{tag}")
            refit = h.get("refit_epochs") or []
            if refit:
                curve.plot([e["epoch"] for e in refit], [e["loss"] for e in refit], "x" + style, color="tab:purple",
                           label=f"{final_fit(h)} loss (train + validation items){tag}")  # fmt: skip
            for key, marker, color in (("NDCG@10", "s", "tab:orange"), ("HR@10", "^", "tab:green")):
                values = [e[f"val_{key.lower()}"] for e in h["epochs"]]
                val.plot(x, values, marker + style, color=color, label=f"val {key}{tag}")
            val.axvline(h["best_epoch"], color="grey", linestyle=style, label=f"best epoch {h['best_epoch']}{tag}")
        curve.set_xlabel("epoch")
        curve.set_ylabel("train loss (softmax cross-entropy)", color="tab:blue")
        val.set_ylabel("validation metric (stepwise)")
        lines = curve.get_legend_handles_labels()[0] + val.get_legend_handles_labels()[0]
        val.legend(lines, [line.get_label() for line in lines], loc="lower right", fontsize=7)
    curve.set_title("training curve")
    names = [r[0] for r in rows]
    y = range(len(rows))
    height = 0.38
    bars.barh([i - height / 2 for i in y], [r[1] for r in rows], height, label="HR@10", color="tab:green")
    bars.barh([i + height / 2 for i in y], [r[2] for r in rows], height, label="NDCG@10", color="tab:orange")
    for i, (_, hr, ndcg) in enumerate(rows):
        bars.text(hr, i - height / 2, f" {hr:.4f}", va="center", fontsize=8)
        bars.text(ndcg, i + height / 2, f" {ndcg:.4f}", va="center", fontsize=8)
    bars.set_yticks(list(y), names, fontsize=9)
    bars.invert_yaxis()
    bars.set_xlim(0, max(r[1] for r in rows) * 1.25)
    bars.set_title("test split: model vs baselines")
    bars.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(result: dict, extra: dict, history: dict, rows: list[tuple[str, float, float]]) -> str:
    lines = [
        "# Interest model evaluation",
        "",
        f"Events: `{extra.get('events', '?')}`; {result['users']} users evaluated, {result['items']} items ranked.",
        "Protocol: per user events by time, consecutive repeats collapsed, users with >= 3 items, last item = target,",
        "full ranking over all items minus the user's history (a re-consumed target is a miss); the model is stepped",
        "one event at a time through the history, as served.",
        "",
        "| model | HR@10 | NDCG@10 |",
        "|---|---|---|",
        *[f"| {name} | {hr:.4f} | {ndcg:.4f} |" for name, hr, ndcg in rows],
    ]
    sentiment = extra.get("sentiment")
    if sentiment:
        lines += [
            "",
            "## Sentiment moves interest",
            "",
            "Mean cosine between the interest right after a user's last event and that event's item vector:",
            "",
            "| last event | users | mean cosine |",
            "|---|---|---|",
            f"| negative (rating <= 2) | {sentiment['negative_users']} | {sentiment['negative_cosine']:.4f} |",
            f"| positive (rating >= 4) | {sentiment['positive_users']} | {sentiment['positive_cosine']:.4f} |",
        ]
    data = history.get("data") or {}
    members = member_histories(history)
    if history:
        sources = data.get("item_text_sources", {})
        lines += [
            "",
            "## Training",
            "",
            *(
                [f"- {member_summary(history)}"]
                if "members" not in history
                else [
                    f"- {len(members)} members trained apart (seeds seed .. seed + {len(members) - 1}), score = sum of"
                    f" theirs; validation NDCG@10 of the ensemble {history.get('best_val_ndcg@10', 0):.4f}",
                    *[f"  - member {k + 1}: {member_summary(h)}" for k, h in enumerate(members)],
                ]
            ),
            f"- training {history.get('train_seconds', 0):.0f} s, whole `istream train` "
            f"{history.get('total_seconds', 0):.0f} s (text encoding included unless cached)",
            f"- {data.get('train_events')} training events of {data.get('events_used')}, "
            f"{data.get('comment_texts')} distinct comment texts",
            f"- item text: {sources.get('catalog', 0)} items catalog text only, {sources.get('comments', 0)} "
            f"training-period comments only, {sources.get('both', 0)} both, {sources.get('none', 0)} none",
            "  (item text embedding = mean of the L2-normalised embedding of the catalog text, when it is more than",
            "  the item id, and the mean embedding of the comments on the item in training events; validation and",
            "  test events never contribute)",
        ]
    return "\n".join(lines) + "\n"


def write_report(out_dir: str | os.PathLike, result: dict, extra: dict, history: dict) -> tuple[Path, Path]:
    out = Path(out_dir)
    rows = metric_rows(result, extra)
    write_png(out / PNG, history, rows)
    (out / MARKDOWN).write_text(markdown(result, extra, history, rows), encoding="utf-8")
    return out / PNG, out / MARKDOWN
