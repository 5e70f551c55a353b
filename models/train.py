"""Training: next-items prediction with a softmax over the item table (each event learns the items of the
user's next few runs), truncated BPTT over windows of each user's sequence (teacher forcing, batched
over users), an exponential moving average of the weights, early stopping on validation NDCG@10
computed by stepping the served ``step`` one event at a time.

Full or sampled softmax, by measurement on MovieLens (9,742 items, seed 0, test NDCG@10 after the
refit): a sampled softmax (the window's targets + 2,048 uniform samples, logit-corrected) reached
0.049, the full softmax 0.056, at about 25 s per epoch on one thread. So catalogs up to
``TrainConfig.negatives`` (16,384) items use the exact full softmax; larger ones sample that many,
by popularity with the logQ correction (``TrainConfig.negative_sampling``): on MovieLens latest-small
with 1,024 negatives (one member, 3 seeds, validation NDCG@10) it matched the full softmax, 0.0779
against 0.0784, where uniform samples reached 0.0732.
"""

from __future__ import annotations

import copy
import dataclasses
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from models.allocator import retain_freed_memory
from models.checkpoint import save_checkpoint
from models.comment_encoder import CommentEncoder, EmbeddingCache
from models.datasets.jsonl import load_event_columns, read_items
from models.ensemble import Model, assemble
from models.exceptions import TrainingError
from models.interest_model import InterestModel, ModelConfig
from models.ranking import Split, hit_ndcg, split, vector_ranks
from models.sequences import Padded, Sequences, build_sequences, future_run_items, item_table, pad
from models.stepping import event_tensors, final_vectors
from models.text_features import ItemTextSources, comment_table, item_text_embeddings

POPULARITY_EXPONENT = 0.75  # word2vec's smoothing of the unigram distribution for negative sampling


@dataclass
class TrainConfig:
    epochs: int = 20  # MovieLens validation NDCG still rises at 20; 20 keeps its training under 10 min
    batch_users: int = 32
    window: int = 32  # truncated-BPTT length; the state is carried (detached) across windows
    segment: int = 256  # most events per user and epoch (a random contiguous range)
    lr: float = 1e-2
    lr_decay: float = 0.9  # per epoch
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    patience: int = 3  # epochs without a better validation NDCG@10 before stopping
    seed: int = 0
    threads: int = 1  # 1 is fastest on a busy machine: tiny recurrent ops pay for every thread sync
    mask_history: bool = True  # train as evaluated: items the user already had are not candidates
    negatives: int = 16384  # full softmax up to this many items, else sampled softmax with this many samples
    # How the sampled softmax draws its negatives: "popularity" (in proportion to (target count + 1) **
    # POPULARITY_EXPONENT: the frequent items a user's next item must beat) or "uniform". MovieLens
    # latest-small with 1,024 negatives, one member, 3 seeds: validation NDCG@10 0.0779 against 0.0732
    # (higher on every seed; in-training validation 0.0932 against 0.0874; the full softmax 0.0784).
    negative_sampling: str = "popularity"
    refit_epochs: int = 2  # epochs on training + validation items after early stopping
    # Instead of the refit: a fresh model (same seed) trained on training + validation items for as
    # many epochs as early stopping chose (twice the training time). None: retrain when the validation
    # items add at least ``retrain_above`` to the training targets, i.e. when histories are short.
    # Test NDCG@10: Amazon (validation adds 24 %) refit 0.0612, retrain 0.0667 (3 seeds); MovieLens
    # (adds 0.6 %) refit 0.0594, retrain 0.0527. Two more epochs at the decayed rate absorb a sliver
    # of new targets, not a quarter of them.
    retrain: bool | None = None
    retrain_above: float = 0.1
    # processes training ensemble members at once (each with ``threads``); 0: one per member, at most
    # one per CPU. Same models either way: member k always trains with seed + k.
    jobs: int = 0
    # The weights judged, kept and served are an exponential moving average of the trained ones over about
    # ``ema_epochs`` epochs of optimizer steps (0 turns it off): a model that trains on noisy windows at
    # lr 1e-2 averages its last few hundred steps. Validation NDCG@10, one member, mean of seeds: Amazon
    # 0.0688 -> 0.0742 (4 seeds; averaging 2.2 epochs 0.0726, 4.3: 0.0742, 10.9: 0.0752), MovieLens 100K
    # 0.1339 -> 0.1393 (2 seeds, 1.9 epochs). Counted in epochs, not steps: a fixed per-step decay spans 20
    # epochs of a small data set, where the average lags the training far behind.
    ema_epochs: float = 3.0
    # Each event learns the items of the user's next ``future_runs`` runs, the j-th weighted
    # future_decay^j (1: plain next-item cross-entropy): the exact next item of a sparse history is
    # noisy, the next few say more about where the user goes. Validation NDCG@10 with the averaged
    # weights, one member: Amazon 0.0742 -> 0.0762 (4 seeds; 2 runs 0.0764, 5 runs at 0.7 0.0747, 10
    # at 0.9 0.0719), MovieLens 100K 0.1393 -> 0.1448 (2 seeds).
    future_runs: int = 3
    future_decay: float = 0.5


@dataclass
class TrainingData:
    item_ids: list[str]
    seqs: Sequences
    usable: np.ndarray  # bool [E], events training may see
    targets: np.ndarray  # int64 [E, k], items of the next k runs (future_run_items), -1 for none
    comments: torch.Tensor  # [n_texts + 1, T] comment embeddings, last row zeros
    item_text_emb: np.ndarray  # [n_items, T]
    text_sources: ItemTextSources

    def proposal(self, sampling: str) -> torch.Tensor | None:
        """The sampled softmax's distribution over items (None: uniform): each item's count among the
        training targets, smoothed so that every item may be drawn."""
        if sampling == "uniform":
            return None
        if sampling != "popularity":
            raise ValueError(f"negative_sampling must be 'uniform' or 'popularity', not {sampling!r}")
        first = self.targets[self.usable, 0]
        counts = np.bincount(first[first >= 0], minlength=len(self.item_ids)).astype(np.float64)
        weights = (counts + 1.0) ** POPULARITY_EXPONENT
        return torch.from_numpy(weights / weights.sum())

    def train_ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """Per user, the (global) event range training uses: a prefix of the user's events."""
        starts = self.seqs.offsets[:-1]
        ends = starts + np.add.reduceat(self.usable.astype(np.int64), starts) * (starts < len(self.usable))
        keep = ends > starts
        return starts[keep], ends[keep]


def load_training_data(
    events_path: str | os.PathLike,
    items_path: str | os.PathLike,
    encoder: CommentEncoder,
    cache: EmbeddingCache,
    progress: bool = True,
    until: int | None = None,
) -> TrainingData:
    """The training data of an events file; with ``until`` (epoch ms) only its events older than that."""
    events = load_event_columns(events_path)
    if until is not None:
        events = events.before(until)
        if len(events) == 0:
            raise TrainingError(f"{events_path}: no event before {until} (--until); nothing to train on")
    catalog = read_items(items_path)
    item_ids = item_table(catalog, events)
    seqs = build_sequences(events, {item: row for row, item in enumerate(item_ids)})
    if len(seqs.evaluated()) == 0:
        raise TrainingError(f"{events_path}: no user has 3 or more distinct consecutive items; nothing to train on")
    usable = seqs.train_mask()
    comments = comment_table(seqs, encoder, cache, progress)
    item_text, sources = item_text_embeddings(item_ids, catalog, seqs, usable, comments, encoder, cache, progress)
    return TrainingData(
        item_ids=item_ids,
        seqs=seqs,
        usable=usable,
        targets=future_run_items(seqs, usable, 1),
        comments=torch.from_numpy(comments),
        item_text_emb=item_text,
        text_sources=sources,
    )


def build_member(data: TrainingData, config: ModelConfig) -> InterestModel:
    model = InterestModel(config)
    model.item_text_emb.copy_(torch.from_numpy(data.item_text_emb))
    if config.text_init and config.use_item_text:
        model.init_item_text(model.item_text_emb)
    trained = np.zeros(config.n_items, dtype=np.float32)
    trained[data.seqs.item[data.usable]] = 1.0  # items with no training event keep the text-only vector
    model.item_has_id.copy_(torch.from_numpy(trained))
    return model


@dataclass
class ValidationVectors:
    """Each validation user's interest before the held-out item, and the item table, of one model."""

    interests: np.ndarray
    items: np.ndarray

    def metrics(self, data: TrainingData) -> dict[str, float]:
        sp = validation_split(data)
        return hit_ndcg(vector_ranks(self.interests, self.items, sp, sp.histories(data.seqs)))

    @classmethod
    def concat(cls, parts: list[ValidationVectors]) -> ValidationVectors:
        """An ensemble's: scores add up when vectors are concatenated."""
        return cls(np.concatenate([p.interests for p in parts], 1), np.concatenate([p.items for p in parts], 1))


def validation_split(data: TrainingData) -> Split:
    return split(data.seqs, holdout=2)


def validation_vectors(model: Model, data: TrainingData) -> ValidationVectors:
    """Stepping the served ``step`` through each user's events before the validation item."""
    sp = validation_split(data)
    with torch.no_grad():
        item_vecs = model.eval().item_vectors()
        interests = final_vectors(
            model, data.seqs, data.seqs.offsets[sp.users], sp.history_end, item_vecs, data.comments
        ).interest
    return ValidationVectors(interests.numpy(), item_vecs.numpy())


def first_seen(seqs: Sequences, batch: Padded, n_items: int) -> torch.Tensor:
    """``[B, n_items]``: (global) index of the event where each user first had each item, a large
    number if never."""
    first = np.full((batch.index.shape[0], n_items), np.iinfo(np.int64).max // 2, dtype=np.int64)
    b, t = np.nonzero(batch.valid)
    index = batch.index[b, t]
    np.minimum.at(first, (b, seqs.item[index]), index)
    return torch.from_numpy(first)


def window_loss(
    model: InterestModel,
    data: TrainingData,
    index: np.ndarray,
    valid: np.ndarray,
    state: torch.Tensor,
    seen: torch.Tensor | None,
    negatives: int,
    weights: torch.Tensor,
    proposal: torch.Tensor | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor, int]:
    """Next-items softmax loss over one window of events ``index`` [B, W] (None without targets), and the
    state to carry on.

    Each event's targets are the items of the user's next ``len(weights)`` runs, weighted by ``weights``
    (one target: the plain next-item cross-entropy). With ``seen`` (first_seen of the batch), items the
    user already had are removed from the softmax, as the evaluation removes them from the ranking, and
    a target already seen is not trained on. ``proposal``: the sampled softmax's item distribution
    (None: uniform).
    """
    ev = event_tensors(data.seqs, index, data.comments)
    k = len(weights)
    targets = torch.from_numpy(np.where(valid[..., None], data.targets[index][..., :k], -1))  # [B, W, k]
    b, t = torch.nonzero(targets[..., 0] >= 0, as_tuple=True)
    items = ev.pop("items")
    candidates = torch.zeros(0, dtype=torch.long)
    if len(b):
        candidates, target, correction = candidate_set(targets[b, t], model.config.n_items, negatives, proposal)
    if model.config.n_items <= negatives:  # the full softmax: every item vector
        item_vecs = model.item_vectors()
        inputs, candidate_vecs = item_vecs[items], item_vecs
    else:  # sampled: the vectors of the window's items and the candidates only, not the whole catalog's
        inputs, candidate_vecs = _some_item_vectors(model, items, candidates)
    lengths = torch.from_numpy(valid.sum(axis=1))  # a user's events are a prefix of its row
    interest, state = model.run(state, inputs, **ev, lengths=lengths)
    if len(b) == 0:
        return None, state.detach(), 0
    scores = interest[b, t] @ candidate_vecs.T + correction
    if seen is not None:
        full = model.config.n_items <= negatives  # candidate_set gave every item, in row order
        history = history_mask(seen, candidates, index, valid, data.seqs.item, b, t, full)
        target = torch.where((target < 0) | history.gather(1, target.clamp(min=0)), -1, target)
        scores = scores.masked_fill(history, float("-inf"))
    has_target = (target >= 0).any(dim=1)
    n = int(has_target.sum())
    if not n:
        return None, state.detach(), 0
    scores, target = scores[has_target], target[has_target]
    # a missing target (-1) gathers column 0, which may be a masked candidate (-inf): 0 * -inf made the
    # reported loss nan (the gradients were finite: its weight is 0)
    log_p = scores.log_softmax(dim=-1).gather(1, target.clamp(min=0)).masked_fill(target < 0, 0.0)
    w = weights * (target >= 0)
    loss = (-(w * log_p).sum(1) / w.sum(1)).mean()
    return loss, state.detach(), n


def _some_item_vectors(
    model: InterestModel, items: torch.Tensor, candidates: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The vectors of ``items`` (any shape) and of ``candidates``, computed for those rows only: the item
    tower over a million-item catalog was 42 % of a sampled-softmax step (py-spy, 3 to 4 s a window)."""
    rows, where = torch.unique(torch.cat([items.flatten(), candidates]), return_inverse=True)
    vecs = model.item_vectors(rows)
    return vecs[where[: items.numel()]].view(*items.shape, -1), vecs[where[items.numel() :]]


def warm_up_table(model: InterestModel, seqs, starts: np.ndarray, ends: np.ndarray, negatives: int) -> torch.Tensor:
    """``[n_items, D]`` item vectors for stepping events ``starts[i]:ends[i]``: all of them for a catalog the
    full softmax covers, else only the rows those events touch (the rest stay zero, never read)."""
    if model.config.n_items <= negatives:
        return model.item_vectors()
    events = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends, strict=True)] or [np.zeros(0, int)])
    rows = torch.from_numpy(np.unique(seqs.item[events]))
    table = torch.zeros(model.config.n_items, model.config.vector_dim)
    table[rows] = model.item_vectors(rows)
    return table


def history_mask(
    seen: torch.Tensor,
    candidates: torch.Tensor,
    index: np.ndarray,
    valid: np.ndarray,
    item: np.ndarray,
    b: torch.Tensor,
    t: torch.Tensor,
    full: bool,
) -> torch.Tensor:
    """``[P, C]`` bool: which candidates user ``b[p]`` already had at window position ``t[p]``, i.e.
    ``seen <= index[b, t]`` per position.

    Built as the items first seen before the window (one ``[B, C]`` comparison, gathered per
    position) plus the window's own items up to ``t[p]``: without the ``[P, C]`` int64 gather that
    made a MovieLens epoch 11 % slower (20.3 s vs 18 s, same losses).
    """
    before = (seen if full else seen[:, candidates]) < torch.from_numpy(index[:, :1])
    history = before[b]
    width = index.shape[1]
    earlier = (torch.arange(width) <= t.unsqueeze(-1)) & torch.from_numpy(valid)[b]  # [P, W]
    p, w = torch.nonzero(earlier, as_tuple=True)
    items = torch.from_numpy(item[index])[b[p], w]
    if full:
        history[p, items] = True
    else:
        column = torch.full((seen.shape[1],), -1, dtype=torch.long)
        column[candidates] = torch.arange(len(candidates))
        cols = column[items]
        history[p[cols >= 0], cols[cols >= 0]] = True
    return history


def candidate_set(
    target: torch.Tensor, n_items: int, negatives: int, proposal: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Softmax candidates for targets ``[P, k]`` (item rows, -1 for none): every item (full softmax) when
    the catalog has at most ``negatives`` items, else the targets plus ``negatives`` draws from the rest
    (sampled softmax), uniform or from ``proposal`` (a distribution over items).

    Returns (candidate item rows, each target's column (-1 stays -1), logit correction). An item drawn
    ``c`` times out of ``m`` kept draws, with probability ``q`` among the other items, stands for
    ``c / (m q)`` items, so its logit gets + log of that (the logQ correction): an unbiased estimate of
    the full softmax's normaliser (Jean et al. 2015; Yi et al. 2019 for popularity proposals); targets
    are in the set for sure and get no correction.
    """
    if n_items <= negatives:
        return torch.arange(n_items), target, torch.zeros(n_items)
    real = target >= 0
    positives, inverse = torch.unique(target[real], return_inverse=True)
    column = torch.full_like(target, -1)
    column[real] = inverse
    if proposal is None:
        drawn = torch.randint(0, n_items, (negatives,))
    else:
        drawn = torch.multinomial(proposal, negatives, replacement=True)
    others = torch.ones(n_items, dtype=torch.bool)
    others[positives] = False
    drawn = drawn[others[drawn]]
    kept = max(len(drawn), 1)
    drawn, counts = torch.unique(drawn, return_counts=True)
    if proposal is None:
        q = torch.full((len(drawn),), 1.0 / (n_items - len(positives)), dtype=torch.float64)
    else:
        q = proposal[drawn] / (1.0 - proposal[positives].sum())
    correction = (counts.double() / (kept * q)).log().float()
    return torch.cat([positives, drawn]), column, torch.cat([torch.zeros(len(positives)), correction])


def run_epoch(
    model: InterestModel,
    opt: torch.optim.Optimizer,
    data: TrainingData,
    cfg: TrainConfig,
    rng,
    progress: bool,
    average: AveragedModel | None = None,
) -> float:
    """One pass over a random segment of at most ``cfg.segment`` events of every user.

    Capping the events per user and epoch keeps a few very long histories from filling most updates
    in a row; the state at a segment's start comes from stepping the user's earlier events (no
    gradient), so training starts from the state the served model would have there.
    """
    starts, ends = data.train_ranges()
    lengths = ends - starts
    seg_len = np.minimum(lengths, cfg.segment)
    seg_start = starts + (rng.random(len(starts)) * (lengths - seg_len + 1)).astype(np.int64)
    seg_end = seg_start + seg_len
    # users of similar segment length share a batch (little padding); jitter so batches differ per epoch
    order = np.argsort(seg_len * rng.uniform(0.8, 1.25, len(starts)), kind="stable")
    batches = [order[i : i + cfg.batch_users] for i in range(0, len(order), cfg.batch_users)]
    rng.shuffle(batches)
    total, count = 0.0, 0
    weights = cfg.future_decay ** torch.arange(cfg.future_runs, dtype=torch.float32)
    proposal = data.proposal(cfg.negative_sampling) if model.config.n_items > cfg.negatives else None
    n_windows = sum(-(-int(seg_len[b].max()) // cfg.window) for b in batches)
    bar = tqdm(total=n_windows, desc="train", unit="win", leave=False, disable=not progress)
    for rows in batches:
        rows = rows[np.argsort(-seg_len[rows], kind="stable")]  # longest first
        with torch.no_grad():
            state = final_vectors(
                model,
                data.seqs,
                starts[rows],
                seg_start[rows],
                warm_up_table(model.eval(), data.seqs, starts[rows], seg_start[rows], cfg.negatives),
                data.comments,
            ).state
        model.train()
        segment = pad(seg_start[rows], seg_end[rows])
        seen = (
            first_seen(data.seqs, pad(starts[rows], seg_end[rows]), model.config.n_items) if cfg.mask_history else None
        )
        for lo in range(0, segment.index.shape[1], cfg.window):
            # users whose segment ended before this window drop out of the batch (a prefix stays)
            n = int(segment.valid[:, lo].sum())
            state = state[:n]
            loss, state, n_targets = window_loss(
                model, data, segment.index[:n, lo : lo + cfg.window], segment.valid[:n, lo : lo + cfg.window],
                state, None if seen is None else seen[:n], cfg.negatives, weights, proposal,
            )  # fmt: skip
            bar.update(1)
            if loss is None:
                continue
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            if average is not None:
                average.update_parameters(model)
            total, count = total + loss.item() * n_targets, count + n_targets
    bar.close()
    return total / max(count, 1)


@dataclass
class TrainResult:
    model: Model
    validation: ValidationVectors  # at the best epoch, before the final fit
    history: dict = field(default_factory=dict)


def optimizer(
    model: InterestModel, cfg: TrainConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # a decaying rate: big steps early, then epochs that differ less from each other, so the early
    # stopping choice depends less on noise
    return opt, torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.lr_decay)


def epoch_steps(data: TrainingData, cfg: TrainConfig) -> int:
    """Optimizer steps in an epoch of ``run_epoch`` (windows of users batched by segment length)."""
    starts, ends = data.train_ranges()
    seg_len = np.sort(np.minimum(ends - starts, cfg.segment))[::-1]
    return max(1, int(sum(-(-int(seg_len[i]) // cfg.window) for i in range(0, len(seg_len), cfg.batch_users))))


def averaged(model: InterestModel, data: TrainingData, cfg: TrainConfig) -> AveragedModel | None:
    """The moving average of ``model``'s weights over about ``cfg.ema_epochs`` epochs of steps (None: off)."""
    if not cfg.ema_epochs:
        return None
    decay = 1.0 - 1.0 / (cfg.ema_epochs * epoch_steps(data, cfg))
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)


def train(data: TrainingData, config: ModelConfig, cfg: TrainConfig, progress: bool = True) -> TrainResult:
    """The model of ``config``: each of its members trained by ``train_member`` with seed ``cfg.seed + k``,
    in parallel processes (``cfg.jobs``). Its history holds each member's and the ensemble's validation
    NDCG@10 at the members' best epochs."""
    if config.members == 1:
        return train_member(data, config, cfg, progress)
    started = time.perf_counter()
    runs = [
        (data, config.member, dataclasses.replace(cfg, seed=cfg.seed + k), progress, k) for k in range(config.members)
    ]
    jobs = min(config.members, cfg.jobs or len(os.sched_getaffinity(0)))
    if jobs == 1:
        results = [train_member(*run) for run in runs]
    else:
        # spawn: a forked child would inherit the parent's torch thread pools mid-use
        try:
            with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                results = [f.result() for f in [pool.submit(train_member, *run) for run in runs]]
        except BrokenProcessPool:
            raise TrainingError(
                f"a process training a member died (out of memory?); --jobs 1 trains the {config.members} "
                "members one after another"
            ) from None
    members = [r.history for r in results]
    validation = ValidationVectors.concat([r.validation for r in results])
    val = validation.metrics(data)
    history = {
        "members": members,
        "best_val_ndcg@10": val["ndcg@10"],
        "best_val_hr@10": val["hr@10"],
        "final_fit": members[0]["final_fit"],  # the data decides it, the same for every member
        "validation_adds": members[0]["validation_adds"],
        "train_seconds": time.perf_counter() - started,
        "jobs": jobs,
        "train_config": asdict(cfg),
    }
    return TrainResult(assemble(config, [r.model for r in results]), validation, history)


def train_member(
    data: TrainingData, config: ModelConfig, cfg: TrainConfig, progress: bool = True, member: int | None = None
) -> TrainResult:
    """One model. Early stopping on validation NDCG@10 picks the best epoch; from there the model trains
    ``cfg.refit_epochs`` more epochs with the validation items as targets too: the test step sees them
    as history and they are the freshest data (on the Amazon dev set, test NDCG@10 0.046 -> 0.062
    after 3 such epochs). With ``cfg.retrain`` (by default: when they add a tenth or more to the
    training targets) a fresh model trains on them for the best epoch count instead (Amazon, 3 seeds:
    0.061 -> 0.067)."""
    retain_freed_memory()
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    # members training side by side (``member`` k) show one epoch bar each, on line k
    label, line_no = ("", 0) if member is None else (f"member {member + 1} ", member)
    bars = progress and member is None
    data = dataclasses.replace(data, targets=future_run_items(data.seqs, data.usable, cfg.future_runs))
    model = build_member(data, config)
    opt, schedule = optimizer(model, cfg)
    average = averaged(model, data, cfg)
    best, best_state, best_vectors, epochs, since_best = -1.0, None, None, [], 0
    started = time.perf_counter()
    epoch_bar = tqdm(range(1, cfg.epochs + 1), desc=f"{label}epochs", unit="ep", position=line_no, disable=not progress)
    for epoch in epoch_bar:
        t0 = time.perf_counter()
        loss = run_epoch(model, opt, data, cfg, rng, bars, average)
        schedule.step()
        judged = model if average is None else average.module
        vectors = validation_vectors(judged, data)
        val = vectors.metrics(data)
        epochs.append({"epoch": epoch, "loss": loss, **{f"val_{k}": v for k, v in val.items()},
                       "seconds": time.perf_counter() - t0})  # fmt: skip
        if bars:
            tqdm.write(f"epoch {epoch}: loss {loss:.4f}  val HR@10 {val['hr@10']:.4f}  NDCG@10 {val['ndcg@10']:.4f}")
        epoch_bar.set_postfix_str(f"loss {loss:.3f}, val NDCG@10 {val['ndcg@10']:.4f}", refresh=False)
        if val["ndcg@10"] > best:
            best, best_state, best_vectors, since_best = val["ndcg@10"], copy.deepcopy(judged.state_dict()), vectors, 0
        else:
            since_best += 1
            if since_best >= cfg.patience:
                break
    epoch_bar.close()
    best_epoch = max(epochs, key=lambda e: e["val_ndcg@10"])["epoch"]
    model.load_state_dict(best_state)
    usable = data.seqs.train_mask(holdout=1)
    with_val = dataclasses.replace(data, usable=usable, targets=future_run_items(data.seqs, usable, cfg.future_runs))
    validation_adds = float((with_val.targets[:, 0] >= 0).sum() / max(1, (data.targets[:, 0] >= 0).sum()) - 1)
    retrain = cfg.retrain if cfg.retrain is not None else validation_adds >= cfg.retrain_above
    final_fit = "retrain" if retrain else "refit"
    if retrain:
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        model = build_member(with_val, config)
        opt, schedule = optimizer(model, cfg)
        final_epochs = range(1, best_epoch + 1)
    else:
        trained = np.zeros(config.n_items, dtype=np.float32)
        trained[data.seqs.item[usable]] = 1.0
        model.item_has_id.copy_(torch.from_numpy(trained))
        final_epochs = range(best_epoch + 1, best_epoch + cfg.refit_epochs + 1)
    average = averaged(model, with_val, cfg)
    refit_epochs = []
    for epoch in tqdm(final_epochs, desc=f"{label}{final_fit}", unit="ep", position=line_no, disable=not progress):
        t0 = time.perf_counter()
        loss = run_epoch(model, opt, with_val, cfg, rng, bars, average)
        if retrain:
            schedule.step()
        refit_epochs.append({"epoch": epoch, "loss": loss, "seconds": time.perf_counter() - t0})
    history = {
        "epochs": epochs,
        "best_epoch": best_epoch,
        "best_val_ndcg@10": best,
        "final_fit": final_fit,
        "validation_adds": validation_adds,  # share of training targets the validation items add
        "refit_epochs": refit_epochs,
        "train_seconds": time.perf_counter() - started,
        "train_config": asdict(cfg),
    }
    final = model if average is None else average.module
    return TrainResult(model=final.eval(), history=history, validation=best_vectors)


def train_files(
    events: str | os.PathLike,
    items: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    cfg: TrainConfig,
    encoder_path: str | None = None,
    encoder_max_length: int = 128,
    cache_dir: str | os.PathLike = "var/cache/embeddings",
    model_overrides: dict | None = None,
    progress: bool = True,
    until: int | None = None,
) -> dict:
    """``istream train``: data -> model -> checkpoint directory; returns the training history."""
    started = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    encoder = CommentEncoder.from_pretrained(encoder_path, max_length=encoder_max_length)
    data = load_training_data(events, items, encoder, EmbeddingCache(cache_dir), progress, until)
    config = ModelConfig(
        n_items=len(data.item_ids),
        text_dim=encoder.dim,
        encoder_path=encoder.path,
        encoder_max_length=encoder.max_length,
        **(model_overrides or {}),
    )
    result = train(data, config, cfg, progress)
    history = {
        **result.history,
        "data": {
            "events": str(Path(events).resolve()),
            "items": str(Path(items).resolve()),
            "users": len(data.seqs),
            "events_used": len(data.seqs.item),
            "train_events": int(data.usable.sum()),
            "n_items": len(data.item_ids),
            # the newest event training saw: `istream evaluate` judges every later one prequentially
            "trained_until": int(data.seqs.ts.max()),
            "comment_texts": len(data.seqs.texts),
            "item_text_sources": asdict(data.text_sources),
        },
        "total_seconds": time.perf_counter() - started,
    }
    save_checkpoint(out_dir, result.model, data.item_ids, history=history)
    return history
