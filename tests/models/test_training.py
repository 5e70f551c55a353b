"""Training on the synthetic stream recovers what the generator planted (its truth file).

Thresholds, against chance on the generator's 12 topics:
- current burst: the stream of half the users ends in 5-12 events on one non-core topic, where every
  next item is on that topic; the top topic of the interest vector's top-10 items must be the burst
  topic for >= 70 % of them (chance 1/12 = 8 %; the trained tiny model reaches 0.75-0.87 over seeds
  0-2, and 0.81-0.90 without the text-started init, which trades some of this for the long-term
  figure below).
- long-term topics: 90 % of a core session's items are on the user's 1-3 core topics; the top topic
  of the long-term vector's top-10 items must be a core topic for >= 60 % of users (chance: mean core
  count / 12 = 17 %; reached 0.86-0.93 over seeds 0-2, 0.69-0.78 without the text-started init). A
  current burst is up to half of a short user's items, so even a slow average leans towards it; it
  must lean less than the interest vector does (by > 10 points).
- cold items: one item per topic has no event at all, so its vector is the text tower's alone; for
  users in a burst, the cold item of the burst topic must outscore the other topics' cold items
  >= 80 % of the time (chance 50 %; reached ~99 %).
"""

import dataclasses
import json
import os
import subprocess
import time

import numpy as np
import psutil
import pytest
import torch

from models.checkpoint import load_checkpoint
from models.comment_encoder import CommentEncoder, EmbeddingCache
from models.datasets.jsonl import write_jsonl
from models.datasets.synthetic import generate
from models.ensemble import InterestEnsemble
from models.evaluate import load_eval_data
from models.interest_model import TINY, ModelConfig
from models.stepping import final_vectors
from models.train import TrainConfig, train_files
from stream_app.cli.common import istream_argv

TOPICS = 12
TRAIN = TrainConfig(epochs=14, lr=1e-2, patience=4, threads=1, seed=0)


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    """Synthetic events (cold items removed), items, truth, cold item per topic."""
    root = tmp_path_factory.mktemp("synthetic")
    events, items, truth = generate(users=150, items=240, events=9000, seed=0)
    cold: dict[int, str] = {}
    for item, topic in truth["items"].items():
        cold.setdefault(topic, item)
    write_jsonl(root / "events.jsonl", [e for e in events if e["item_id"] not in set(cold.values())])
    write_jsonl(root / "items.jsonl", items)
    return root, truth, cold


@pytest.fixture(scope="module")
def trained(stream, tmp_path_factory):
    root, truth, _ = stream
    out = tmp_path_factory.mktemp("checkpoint")
    cache = tmp_path_factory.mktemp("cache")
    history = train_files(
        root / "events.jsonl", root / "items.jsonl", out, cfg=TRAIN, cache_dir=cache, model_overrides=TINY,
        progress=False,
    )  # fmt: skip
    ckpt = load_checkpoint(out)
    encoder = CommentEncoder.from_pretrained(ckpt.config.encoder_path, max_length=ckpt.config.encoder_max_length)
    data = load_eval_data(ckpt, root / "events.jsonl", root / "items.jsonl", encoder, EmbeddingCache(cache))
    seqs = data.seqs
    items = ckpt.model.item_vectors().detach()
    vectors = final_vectors(ckpt.model, seqs, seqs.offsets[:-1], seqs.offsets[1:], items, data.comments)
    users = [truth["users"][u] for u in seqs.user_ids]
    topic_of = np.array([truth["items"][i] for i in data.item_ids])
    return {"history": history, "ckpt": ckpt, "data": data, "items": items, "vectors": vectors, "users": users,
            "topic_of": topic_of, "out": out}  # fmt: skip


def top_topic(vectors: torch.Tensor, items: torch.Tensor, topic_of: np.ndarray, k: int = 10) -> np.ndarray:
    top = torch.topk(vectors @ items.T, k, dim=1).indices.numpy()
    return np.array([np.bincount(topic_of[row], minlength=TOPICS).argmax() for row in top])


def test_current_bursts_are_recovered(trained) -> None:
    topics = top_topic(trained["vectors"].interest, trained["items"], trained["topic_of"])
    burst = [(i, u["current_burst"]) for i, u in enumerate(trained["users"]) if u["current_burst"] is not None]
    share = np.mean([topics[i] == t for i, t in burst])
    assert len(burst) > 50
    assert share >= 0.7, f"interest points at the current burst topic for {share:.0%} of bursting users"


def test_long_term_topics_are_recovered(trained) -> None:
    users = trained["users"]
    long_topics = top_topic(trained["vectors"].long_term, trained["items"], trained["topic_of"])
    share = np.mean([long_topics[i] in u["long_term_topics"] for i, u in enumerate(users)])
    assert share >= 0.6, f"long-term vector points at a core topic for {share:.0%} of users"
    # the long-term path is the slow one: a current burst pulls it less than the interest vector
    interest_topics = top_topic(trained["vectors"].interest, trained["items"], trained["topic_of"])
    burst = [(i, u["current_burst"]) for i, u in enumerate(users) if u["current_burst"] is not None]
    assert np.mean([long_topics[i] == t for i, t in burst]) < np.mean([interest_topics[i] == t for i, t in burst]) - 0.1


def test_cold_items_rank_by_their_text(trained, stream) -> None:
    _, _, cold = stream
    ids = trained["data"].item_ids
    rows = {topic: ids.index(item) for topic, item in cold.items()}
    assert trained["ckpt"].model.item_has_id[list(rows.values())].sum() == 0  # text-only vectors
    scores = (trained["vectors"].interest @ trained["items"].T).numpy()
    wins = []
    for i, user in enumerate(trained["users"]):
        if user["current_burst"] is None:
            continue
        own = rows[user["current_burst"]]
        others = [row for topic, row in rows.items() if topic != user["current_burst"]]
        wins.append(np.mean(scores[i, own] > scores[i, others]))
    assert np.mean(wins) >= 0.8, f"own-topic cold item beats other cold items {np.mean(wins):.0%} of the time"


def test_training_history_and_early_stopping(trained) -> None:
    history = trained["history"]
    epochs = history["epochs"]
    assert 1 <= len(epochs) <= TRAIN.epochs
    assert history["best_val_ndcg@10"] == max(e["val_ndcg@10"] for e in epochs)
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    assert history["data"]["item_text_sources"]["catalog"] + history["data"]["item_text_sources"]["both"] == 240
    # 60 events a user: the validation items add about 2 % to the targets, so the chosen model is refit
    assert 0 < history["validation_adds"] < TRAIN.retrain_above and history["final_fit"] == "refit"


def test_short_histories_retrain_by_default(tmp_path) -> None:
    events, items, _ = generate(users=60, items=240, events=600, seed=3)  # 10 events a user
    write_jsonl(tmp_path / "events.jsonl", events)
    write_jsonl(tmp_path / "items.jsonl", items)
    history = train_files(tmp_path / "events.jsonl", tmp_path / "items.jsonl", tmp_path / "ckpt",
                          cfg=TrainConfig(epochs=2, threads=1), cache_dir=tmp_path / "cache", model_overrides=TINY,
                          progress=False)  # fmt: skip
    assert history["validation_adds"] >= TrainConfig().retrain_above
    assert history["final_fit"] == "retrain"
    assert [e["epoch"] for e in history["refit_epochs"]] == list(range(1, history["best_epoch"] + 1))


def test_retrain_fits_a_fresh_model_on_validation_items_too(stream, tmp_path) -> None:
    root, _, _ = stream
    cfg = TrainConfig(epochs=3, patience=3, threads=1, seed=1, retrain=True)
    history = train_files(root / "events.jsonl", root / "items.jsonl", tmp_path / "ckpt", cfg=cfg,
                          cache_dir=tmp_path / "cache", model_overrides=TINY, progress=False)  # fmt: skip
    assert [e["epoch"] for e in history["refit_epochs"]] == list(range(1, history["best_epoch"] + 1))
    ckpt = load_checkpoint(tmp_path / "ckpt")
    encoder = CommentEncoder.from_pretrained(ckpt.config.encoder_path, max_length=ckpt.config.encoder_max_length)
    seqs = load_eval_data(
        ckpt, root / "events.jsonl", root / "items.jsonl", encoder, EmbeddingCache(tmp_path / "cache")
    ).seqs
    # every item of a training or validation event has its id embedding; test-only items do not
    expected = np.zeros(len(ckpt.item_ids), dtype=bool)
    expected[seqs.item[seqs.train_mask(holdout=1)]] = True
    assert np.array_equal(ckpt.model.item_has_id.numpy() > 0, expected)


def test_same_seed_same_model(stream, tmp_path) -> None:
    root, _, _ = stream
    one_epoch = TrainConfig(epochs=1, threads=1, seed=3)
    weights = []
    for run in ("a", "b"):
        train_files(root / "events.jsonl", root / "items.jsonl", tmp_path / run, cfg=one_epoch,
                    cache_dir=tmp_path / "cache", model_overrides=TINY, progress=False)  # fmt: skip
        weights.append(load_checkpoint(tmp_path / run).model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_sampled_softmax_computes_only_the_item_vectors_it_needs(stream, tmp_path) -> None:
    """Catalogs above ``negatives`` train on the vectors of the window's items and the candidates only; those
    are the full table's rows."""
    from models.train import _some_item_vectors, warm_up_table

    root, _, _ = stream
    sampled = TrainConfig(epochs=1, threads=1, seed=3, negatives=64)  # 240 items: sampled
    history = train_files(root / "events.jsonl", root / "items.jsonl", tmp_path / "ckpt", cfg=sampled,
                          cache_dir=tmp_path / "cache", model_overrides=TINY, progress=False)  # fmt: skip
    assert all(np.isfinite(e["loss"]) for e in history["epochs"] + history["refit_epochs"])  # was nan
    model = load_checkpoint(tmp_path / "ckpt").model.eval()
    full = model.item_vectors().detach()
    items, candidates = torch.tensor([[3, 7, 7], [0, 239, 3]]), torch.tensor([5, 7, 100])
    inputs, candidate_vecs = _some_item_vectors(model, items, candidates)
    torch.testing.assert_close(inputs, full[items])
    torch.testing.assert_close(candidate_vecs, full[candidates])
    seqs = type("Seqs", (), {"item": np.array([4, 9, 4, 200, 1])})()
    table = warm_up_table(model, seqs, np.array([0, 3]), np.array([2, 4]), negatives=64)
    torch.testing.assert_close(table[[4, 9, 200]], full[[4, 9, 200]])
    assert not table[[1, 5]].any()  # rows no event touched are never computed
    torch.testing.assert_close(warm_up_table(model, seqs, np.array([0]), np.array([1]), negatives=10_000), full)


def test_ensemble_members_are_models_trained_apart(stream, tmp_path) -> None:
    """Member k is the model a single training with seed + k gives, whether it trained in a process
    of its own (jobs 2) or not."""
    root, _, _ = stream
    one_epoch = TrainConfig(epochs=1, threads=1, seed=5)

    def train_to(name: str, cfg: TrainConfig, members: int) -> dict:
        files = (root / "events.jsonl", root / "items.jsonl", tmp_path / name)
        overrides = {**TINY, "members": members}
        return train_files(*files, cfg=cfg, cache_dir=tmp_path / "cache", model_overrides=overrides, progress=False)

    history = train_to("ensemble", dataclasses.replace(one_epoch, jobs=2), 2)
    assert history["jobs"] == 2 and len(history["members"]) == 2
    ensemble = load_checkpoint(tmp_path / "ensemble").model
    assert isinstance(ensemble, InterestEnsemble)
    for k, member in enumerate(ensemble.members):
        alone = train_to(f"seed{5 + k}", dataclasses.replace(one_epoch, seed=5 + k), 1)
        assert alone["best_val_ndcg@10"] == history["members"][k]["best_val_ndcg@10"]
        weights = load_checkpoint(tmp_path / f"seed{5 + k}").model.state_dict()
        assert all(torch.equal(weights[name], value) for name, value in member.state_dict().items())
    assert not torch.equal(ensemble.members[0].item_id.weight, ensemble.members[1].item_id.weight)
    assert 0 < history["best_val_ndcg@10"] <= 1


def test_a_member_process_that_dies_is_a_clear_error(stream, tmp_path) -> None:
    root, _, _ = stream
    files = ["--events", str(root / "events.jsonl"), "--items", str(root / "items.jsonl")]
    cli = [*istream_argv(), "train", *files,
           "--out", str(tmp_path / "ckpt"), "--members", "2", "--jobs", "2", "--quiet"]  # fmt: skip
    env = {**os.environ, "ISTREAM_RUN_DIR": str(tmp_path / "var")}
    proc = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        members: list[psutil.Process] = []
        deadline = time.monotonic() + 120
        while len(members) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            members = [c for c in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(c.cmdline())]
        assert len(members) == 2, "the two member processes never started"
        members[0].kill()  # as the kernel's OOM killer would
        _, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "died" in err and "--jobs 1" in err and "Traceback" not in err, err
    assert not (tmp_path / "ckpt").exists()


def test_cli_train_and_evaluate(stream, trained, tmp_path) -> None:
    root, _, _ = stream
    istream = istream_argv()
    files = ["--events", str(root / "events.jsonl"), "--items", str(root / "items.jsonl")]
    env = {**os.environ, "ISTREAM_RUN_DIR": str(tmp_path / "var")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*istream, *args], capture_output=True, text=True, timeout=180, env=env)

    out = ["--out", str(tmp_path / "ckpt")]
    ts = sorted(json.loads(line)["ts"] for line in (root / "events.jsonl").read_text().splitlines())
    until = ts[int(len(ts) * 0.8)]
    trained_by_cli = run(
        "train", *files, *out, "--epochs", "1", "--retrain", "--members", "1", "--until", str(until), "--quiet"
    )
    assert trained_by_cli.returncode == 0, trained_by_cli.stderr
    assert "1 member(s), best epoch(s) 1," in trained_by_cli.stdout
    assert {"config.json", "model.pt", "items.json", "item_text_emb.npy", "history.json"} <= {
        p.name for p in (tmp_path / "ckpt").iterdir()
    }
    help_text = " ".join(run("train", "--help").stdout.split())
    assert f"[default: {TrainConfig().epochs}]" in help_text and f"[default: {TrainConfig().lr}]" in help_text
    assert f"for {TrainConfig().refit_epochs} epochs" in help_text
    assert f"add {TrainConfig().retrain_above:.0%} or more" in help_text
    assert f"[default: {ModelConfig().members}]" in help_text
    history = json.loads((tmp_path / "ckpt" / "history.json").read_text())
    assert load_checkpoint(tmp_path / "ckpt").config.members == 1 and "members" not in history
    assert history["final_fit"] == "retrain" and [e["epoch"] for e in history["refit_epochs"]] == [1]
    assert history["data"]["trained_until"] == max(t for t in ts if t < until)
    done = run("evaluate", "--model", str(trained["out"]), *files, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) == {"hr@10", "ndcg@10", "baselines", "users", "items", "buckets", "prequential", "sentiment"}
    assert set(result["baselines"]) == {"popularity", "last-item transition"}
    assert [b["bucket"] for b in result["buckets"]] == ["1-2", "3-5", "6-10", "11-50", ">50"]
    assert sum(b["n"] for b in result["buckets"]) == result["users"]
    assert result["prequential"] is None  # trained on every event of the file: nothing is held out
    held_out = run("evaluate", "--model", str(tmp_path / "ckpt"), *files, "--no-report")
    assert held_out.returncode == 0, held_out.stderr
    assert "prequential:" in held_out.stdout and "after the model's newest training event" in held_out.stdout
    held_out_json = json.loads(run("evaluate", "--model", str(tmp_path / "ckpt"), *files, "--json").stdout)
    pq = held_out_json["prequential"]
    assert (
        pq["since"] == history["data"]["trained_until"] + 1
        and pq["predictions"] == sum(b["n"] for b in pq["buckets"]) > 0
    )
    assert {"model", "popularity", "last-item transition"} <= set(pq)
    assert result["users"] == 150 and result["items"] == 240
    assert result["ndcg@10"] > result["baselines"]["popularity"]["ndcg@10"]
    for name in ("report.png", "report.md", "metrics.json"):
        assert (trained["out"] / name).is_file()
    bad = run("evaluate", "--model", str(tmp_path), *files)
    assert bad.returncode != 0 and "istream train" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("full", [True, False])
def test_history_mask_is_what_each_position_already_had(full) -> None:
    from models.sequences import Sequences, pad
    from models.train import candidate_set, first_seen, history_mask

    rng = np.random.default_rng(1)
    n_items, lengths = 40, np.array([30, 23, 9])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    item = rng.integers(0, n_items, offsets[-1])  # repeats within and across windows
    seqs = Sequences(
        user_ids=["a", "b", "c"], offsets=offsets, item=item, event_type=item * 0, rating=item * 0.0,
        gap_s=item * 0.0, text_row=item * 0 - 1, run=np.arange(len(item)), texts=[], ts=np.arange(len(item)),
    )  # fmt: skip
    batch = pad(offsets[:-1], offsets[1:])
    seen = first_seen(seqs, batch, n_items)
    lo, width = 8, 16  # a window that starts mid-sequence and that the last user leaves early
    index, valid = batch.index[:, lo : lo + width], batch.valid[:, lo : lo + width]
    b, t = (torch.from_numpy(x) for x in np.nonzero(valid))
    targets = torch.from_numpy(item[index[valid]]).unsqueeze(-1)
    candidates, _, _ = candidate_set(targets, n_items, n_items if full else 8)
    mask = history_mask(seen, candidates, index, valid, item, b, t, full)
    expected = seen[:, candidates][b] <= torch.from_numpy(index)[b, t].unsqueeze(-1)
    assert mask.dtype == torch.bool and mask.shape == (len(b), len(candidates))
    assert torch.equal(mask, expected) and 0 < int(mask.sum()) < mask.numel()


@pytest.mark.parametrize("sampling", ["uniform", "popularity"])
def test_a_sampled_softmax_estimates_the_full_normaliser(sampling) -> None:
    """Targets plus logQ-corrected draws: the mean of the sampled normaliser is the full one, whatever
    distribution the negatives come from."""
    from models.train import candidate_set

    torch.manual_seed(0)
    n_items = 400
    popularity = 1.0 / torch.arange(1, n_items + 1, dtype=torch.float64) ** 0.9
    proposal = popularity / popularity.sum() if sampling == "popularity" else None
    logits = torch.log(popularity) + torch.randn(n_items, dtype=torch.float64)  # popular items score higher
    target = torch.tensor([[0, 5], [17, -1], [5, 399]])
    full = logits.exp().sum()
    sums = []
    for _ in range(4000):
        candidates, column, correction = candidate_set(target, n_items, 32, proposal)
        assert torch.equal(candidates[column[column >= 0]], target[target >= 0])  # targets, uncorrected
        assert not correction[: len(torch.unique(target[target >= 0]))].any()
        sums.append((logits[candidates] + correction.double()).exp().sum())
    assert abs(float(torch.stack(sums).mean() / full) - 1.0) < 0.02
