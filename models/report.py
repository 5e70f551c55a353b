"""The report next to a checkpoint: ``report.png`` (training curve; after ``istream evaluate`` also the
test metrics vs baselines) and ``report.md`` (the same figures as tables, plus what the run used).
``istream train`` writes the training half, ``istream evaluate`` rewrites both halves."""

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


def plot_curves(curve: plt.Axes, history: dict) -> None:
    """Each member in its own colour: train loss (left axis, solid), final-fit loss (crosses) and validation
    NDCG@10 (right axis, dashed), its best epoch as a dotted line; the legend below the axes."""
    members = member_histories(history)
    val = curve.twinx()
    colours = plt.get_cmap("tab10").colors
    for k, h in enumerate(members):
        tag, colour = (f" (member {k + 1})" if len(members) > 1 else ""), colours[k % len(colours)]
        x = [e["epoch"] for e in h["epochs"]]
        curve.plot(x, [e["loss"] for e in h["epochs"]], "o-", color=colour, markersize=3, label=f"train loss{tag}")
        refit = h.get("refit_epochs") or []
        if refit:
            curve.plot([e["epoch"] for e in refit], [e["loss"] for e in refit], "x", color=colour, markersize=6,
                       label=f"{final_fit(h)} loss (train + validation items){tag}")  # fmt: skip
        val.plot(x, [e["val_ndcg@10"] for e in h["epochs"]], "s--", color=colour, markersize=3,
                 label=f"validation NDCG@10{tag}")  # fmt: skip
        val.axvline(
            h["best_epoch"], color=colour, linestyle=":", linewidth=1, label=f"best epoch {h['best_epoch']}{tag}"
        )
    curve.set_xlabel("epoch")
    curve.set_ylabel("train loss (softmax cross-entropy), solid")
    val.set_ylabel("validation NDCG@10 (stepwise), dashed")
    curve.set_title("training curve")
    lines = curve.get_legend_handles_labels()[0] + val.get_legend_handles_labels()[0]
    if lines:
        curve.legend(lines, [line.get_label() for line in lines], loc="upper center", bbox_to_anchor=(0.5, -0.14),
                     ncol=2, fontsize=7, frameon=False)  # fmt: skip


def plot_metrics(bars: plt.Axes, rows: list[tuple[str, float, float]]) -> None:
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


def write_png(path: Path, history: dict, rows: list[tuple[str, float, float]]) -> None:
    """The training curve, and beside it the test metrics when there are any (``rows``)."""
    if rows:
        fig, (curve, bars) = plt.subplots(1, 2, figsize=(13, 5.6), gridspec_kw={"width_ratios": [1, 1.3]})
        plot_metrics(bars, rows)
    else:
        fig, curve = plt.subplots(figsize=(7.5, 5.6))
    plot_curves(curve, history)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bucket_lines(buckets: list[dict]) -> list[str]:
    names = [name for name in buckets[0] if name not in ("bucket", "n")]
    return [
        "| events before | n | " + " | ".join(f"{name} HR@10 / NDCG@10" for name in names) + " |",
        "|---|---|" + "---|" * len(names),
        *[
            f"| {b['bucket']} | {b['n']} | "
            + " | ".join(f"{b[name]['hr@10']:.4f} / {b[name]['ndcg@10']:.4f}" for name in names)
            + " |"
            for b in buckets
        ],
    ]


def evaluation_lines(result: dict, extra: dict, rows: list[tuple[str, float, float]]) -> list[str]:
    lines = [
        f"Events: `{extra.get('events', '?')}`; {result['users']} users evaluated, {result['items']} items ranked.",
        "Protocol: per user events by time, consecutive repeats collapsed, users with >= 3 items, last item = target,",
        "full ranking over all items minus the user's history (a re-consumed target is a miss); the model is stepped",
        "one event at a time through the history, as served.",
        "",
        "| model | HR@10 | NDCG@10 |",
        "|---|---|---|",
        *[f"| {name} | {hr:.4f} | {ndcg:.4f} |" for name, hr, ndcg in rows],
    ]
    if result.get("buckets"):
        lines += ["", "## By history length (test split)", "", *bucket_lines(result["buckets"])]
    pq = result.get("prequential")
    if pq:
        names = [name for name in pq if name not in ("since", "predictions", "buckets")]
        lines += [
            "",
            "## Prequential (every run after the model's training data, from the state before it)",
            "",
            f"{pq['predictions']} predictions of runs from epoch ms {pq['since']} on; baselines count the events "
            "before that time, the user's own last item taken live.",
            "",
            "| model | HR@10 | NDCG@10 |",
            "|---|---|---|",
            *[f"| {name} | {pq[name]['hr@10']:.4f} | {pq[name]['ndcg@10']:.4f} |" for name in names],
            "",
            *bucket_lines(pq["buckets"]),
        ]
    elif "prequential" in result:
        lines += ["", "Prequential: no event after the model's training data (`istream train --until` holds some out)."]
    return lines


def markdown(result: dict | None, extra: dict, history: dict, rows: list[tuple[str, float, float]]) -> str:
    """The report's text; without ``result`` (right after training) only the training half."""
    lines = ["# Interest model report", ""]
    if result is None:
        lines += ["Not evaluated yet: `istream evaluate` adds the test split, baselines and prequential figures."]
    else:
        lines += evaluation_lines(result, extra, rows)
    sentiment = extra.get("sentiment") if result is not None else None
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


def write_report(
    out_dir: str | os.PathLike, history: dict, result: dict | None = None, extra: dict | None = None
) -> tuple[Path, Path]:
    """report.png and report.md in ``out_dir``: the training half, plus the evaluation when ``result`` is given."""
    out = Path(out_dir)
    extra = extra or {}
    rows = metric_rows(result, extra) if result is not None else []
    write_png(out / PNG, history, rows)
    (out / MARKDOWN).write_text(markdown(result, extra, history, rows), encoding="utf-8")
    return out / PNG, out / MARKDOWN
