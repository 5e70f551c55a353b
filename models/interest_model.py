"""Interest model: a stepwise long/short-term recurrent user model and an item tower (nanoGPT style).

One event updates a user's packed state ``[B, S]``:

- features = item vector ⊕ event-type embedding ⊕ projected comment embedding (× has-text) ⊕ has-text
  ⊕ centred rating ⊕ has-rating ⊕ log time gap; all computed inside ``step`` from raw values, so
  ``step`` is exactly the bundle's ``step.onnx`` signature (docs/model-interface.md);
- short-term path: an LSTM cell over the features;
- long-term path: a debiased moving average with a learned, per-dimension, input-dependent rate
  (the rate can depend on the gap and the event, so the summary moves slowly unless an event says
  otherwise); the state keeps the average and its mass (total weight so far), so a new user's first
  event is taken whole instead of being shrunk towards zero;
- a learned gate mixes both into the interest vector. Score = dot(interest, item vector).

State layout ``[h (H) | c (H) | average (L) | mass (L)]``; zeros = a user never seen. The sequence
forward (``run``) computes the same function as ``step`` over whole sequences, in fused kernels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from models.datasets.records import EVENT_TYPES

# A gap of about a year (3e7 s) maps to ~1.0 after log1p.
LOG_GAP_SCALE = 1.0 / math.log1p(3e7)
# The long-term average moves by at most this share per event, so it stays long-term by construction
# (it is a plain running mean over a user's first 1 / rate events); fast changes are the LSTM's job.
MAX_LONG_RATE = 0.25
# a rate that underflows to 0 on a user's first event leaves the mass 0: the update is then 0, not 0 / 0
MIN_MASS = 1e-30


# sizes of the tiny config (tests): seconds to train and export on a CPU
TINY = {"dim": 16, "hidden": 32, "long_dim": 16, "type_dim": 4, "comment_dim": 8, "dropout": 0.0, "members": 1}


@dataclass
class ModelConfig:
    n_items: int = 0  # rows of the learned id table (items seen in training)
    text_dim: int = 384  # comment/item text embedding size (encoder output)
    dim: int = 64  # D: item, interest, long- and short-term vectors
    hidden: int = 128  # H: short-term LSTM cell
    long_dim: int = 64  # L: long-term moving average
    type_dim: int = 8
    comment_dim: int = 32  # comment embedding projected to this size before the cell
    dropout: float = 0.2
    n_event_types: int = len(EVENT_TYPES)
    # ablation switches; off means the path/input is absent from the graph, not just zeroed data
    use_comment_text: bool = True
    use_long_term: bool = True
    use_item_text: bool = True
    # training only: share of items (those with an id embedding) whose text part is dropped at each
    # step, so id embeddings learn what text does not say. Validation NDCG@10 (Amazon: 3 seeds, each
    # user's last item held out, so its validation item is the test; the others: seed 0) for 0.5 / 0.25 /
    # 0: Amazon 0.0865 / 0.0895 / 0.0881, its users with 11-50 events 0.042 / 0.053 / 0.068 (the
    # last-item transition 0.051); MovieLens 100K 0.1549 / 0.1578 / 0.1491; MovieLens 0.0898 / 0.0922 / -
    text_drop: float = 0.25
    # training only: the text projection starts as the item texts' principal components and the item
    # skip as the identity, so a fresh model ranks by text similarity to the user's latest and past
    # items, which small data cannot learn from a random start (validation NDCG@10, seed 0:
    # MovieLens 0.075 -> 0.090, Amazon 0.080 -> 0.085, MovieLens 100K 0.154 -> 0.155; `make run`'s
    # synthetic stream, seeds 7-9: planted-topic share 0.60 -> 0.70)
    text_init: bool = True
    skip_init: bool = True
    # comment encoder the embeddings come from (the export bundles it)
    encoder_path: str = ""
    encoder_max_length: int = 128
    # independently trained copies (seeds seed, seed + 1, ...) served as one model whose score is the
    # sum of theirs (models/ensemble.py); the sizes above are each member's. Two: MovieLens test
    # NDCG@10 0.059 -> 0.071, for twice the state, vector width and step cost in the worker
    members: int = 2

    @classmethod
    def tiny(cls, n_items: int, text_dim: int = 384, **overrides) -> ModelConfig:
        """Seconds to train and export on a CPU; for tests."""
        return cls(n_items=n_items, text_dim=text_dim, **{**TINY, **overrides})

    @property
    def member(self) -> ModelConfig:
        """The config of one member."""
        return replace(self, members=1)

    @property
    def vector_dim(self) -> int:
        """Size of the served item, interest, long- and short-term vectors: the members' side by side."""
        return self.members * self.dim

    @property
    def state_dim(self) -> int:
        """Size of a user's packed state: the members' side by side."""
        return self.members * (2 * self.hidden + 2 * self.long_dim)

    def to_dict(self) -> dict:
        return asdict(self)


class InterestModel(nn.Module):
    """One member; ``models.ensemble.make_model`` makes the served model of any ``config.members``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.members != 1:
            raise ValueError(f"an InterestModel is one member, got members={config.members}")
        self.config = cfg = config
        # item tower
        self.item_id = nn.Embedding(cfg.n_items, cfg.dim)
        nn.init.normal_(self.item_id.weight, std=0.02)
        self.item_text = nn.Sequential(nn.Linear(cfg.text_dim, cfg.dim), nn.Tanh(), nn.Linear(cfg.dim, cfg.dim))
        # text embeddings of the id table rows, and which rows have a trained id embedding
        # (the text embeddings live in the checkpoint's item_text_emb.npy, not in the state_dict)
        self.register_buffer("item_text_emb", torch.zeros(cfg.n_items, cfg.text_dim), persistent=False)
        self.register_buffer("item_has_id", torch.ones(cfg.n_items))
        # event features
        self.event_type = nn.Embedding(cfg.n_event_types, cfg.type_dim)
        self.comment = nn.Linear(cfg.text_dim, cfg.comment_dim)
        n_in = cfg.dim + cfg.type_dim + cfg.comment_dim + 4  # + has_text, rating, has_rating, log gap
        self.drop = nn.Dropout(cfg.dropout)
        # short-term path
        # one LSTM layer: a sequence runs through its fused kernel in training, an event through the
        # same weights as a cell in ``update`` (the served step)
        self.lstm = nn.LSTM(n_in, cfg.hidden, batch_first=True)
        self.short_out = nn.Linear(cfg.hidden, cfg.dim)
        self.item_skip = nn.Linear(cfg.dim, cfg.dim)
        if cfg.skip_init:  # "more like the item just had" from the first step
            with torch.no_grad():
                self.item_skip.weight.copy_(torch.eye(cfg.dim))
                self.item_skip.bias.zero_()
        # long-term path and gate
        self.long_rate = nn.Linear(n_in, cfg.long_dim)
        nn.init.constant_(self.long_rate.bias, -2.0)  # start at rate ~0.03: a mean over the last ~30 events
        self.long_in = nn.Linear(n_in, cfg.long_dim)
        self.long_weight = nn.Linear(n_in, 1)  # how much this event counts (a disliked item can count < 0)
        if cfg.long_dim == cfg.dim:
            # start as the plain average of the history's item vectors: long-term taste in item space
            with torch.no_grad():
                self.long_in.weight.zero_()
                self.long_in.weight[:, : cfg.dim].copy_(torch.eye(cfg.dim))
                self.long_in.bias.zero_()
        self.long_out = nn.Linear(cfg.long_dim, cfg.dim)
        if cfg.long_dim == cfg.dim:
            with torch.no_grad():
                self.long_out.weight.copy_(torch.eye(cfg.dim))
                self.long_out.bias.zero_()
        self.gate = nn.Linear(cfg.hidden + cfg.long_dim + n_in, cfg.dim)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints before the fused LSTM kept the same weights under an LSTMCell named ``cell``
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            if prefix + "cell." + name in state_dict:
                state_dict[prefix + "lstm." + name + "_l0"] = state_dict.pop(prefix + "cell." + name)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---- item tower ------------------------------------------------------------------------
    def item_tower(self, text_emb: torch.Tensor) -> torch.Tensor:
        """Text-only item vectors ``[N, D]`` (items that arrive after training); ``item_tower.onnx``."""
        if not self.config.use_item_text:
            return torch.zeros(text_emb.shape[0], self.config.dim, dtype=text_emb.dtype, device=text_emb.device)
        return self.item_text(text_emb)

    @torch.no_grad()
    def init_item_text(self, text_emb: torch.Tensor) -> None:
        """Start the text projection as the top ``dim`` principal components of the items' text
        embeddings (the second layer the identity), scaled to item vectors of about unit norm, tanh
        kept near its linear range. With the long-term path starting as the mean of the history's item
        vectors, an untrained model ranks items by text similarity to what the user had, instead of
        by a random projection that small data cannot undo."""
        rows = text_emb[text_emb.abs().sum(dim=1) > 0]
        if len(rows) <= self.config.dim:
            return
        mean = rows.mean(dim=0)
        _, _, v = torch.linalg.svd(rows - mean, full_matrices=False)
        basis = v[: self.config.dim]
        scale = 1.0 / (((rows - mean) @ basis.T).norm(dim=1).mean() + 1e-12)
        first, second = self.item_text[0], self.item_text[2]
        first.weight.copy_(basis * scale)
        first.bias.copy_(-(mean @ basis.T) * scale)
        second.weight.copy_(torch.eye(self.config.dim))
        second.bias.zero_()

    def item_vectors(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The item table ``[n_items, D]``: id embedding (where trained) + text projection; with ``rows``,
        only those rows (a sampled softmax over a large catalog needs its candidates and inputs only)."""
        text_emb, has_id, ids = self.item_text_emb, self.item_has_id, self.item_id.weight
        if rows is not None:
            text_emb, has_id, ids = text_emb[rows], has_id[rows], ids[rows]
        text = self.item_tower(text_emb)
        if self.training and self.config.text_drop > 0:
            # inverted dropout over whole rows; items known only by their text always keep it
            keep = (torch.rand(text.shape[0], 1) >= self.config.text_drop).to(text.dtype) / (1 - self.config.text_drop)
            text = text * torch.where(has_id.unsqueeze(-1) > 0, keep, 1.0)
        return ids * has_id.unsqueeze(-1) + text

    # ---- one event -------------------------------------------------------------------------
    def unpack(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        hid, long = self.config.hidden, self.config.long_dim
        return state[:, :hid], state[:, hid : 2 * hid], state[:, 2 * hid : 2 * hid + long], state[:, 2 * hid + long :]

    def features(
        self,
        item_vec: torch.Tensor,
        event_type: torch.Tensor,
        comment_emb: torch.Tensor,
        has_text: torch.Tensor,
        rating: torch.Tensor,
        gap_s: torch.Tensor,
    ) -> torch.Tensor:
        has_text = has_text.unsqueeze(-1)
        if not self.config.use_comment_text:
            has_text = has_text * 0.0  # multiplied, not dropped, so the input stays in an exported graph
        comment = self.comment(comment_emb) * has_text
        has_rating = (rating >= 0).to(item_vec.dtype).unsqueeze(-1)
        centred = (rating.unsqueeze(-1) - 3.0) / 2.0 * has_rating
        log_gap = torch.log1p(gap_s.clamp(min=0.0)).unsqueeze(-1) * LOG_GAP_SCALE
        parts = [item_vec, self.event_type(event_type), comment, has_text, centred, has_rating, log_gap]
        return self.drop(torch.cat(parts, dim=-1))

    def step(
        self,
        state: torch.Tensor,
        item_vec: torch.Tensor,
        event_type: torch.Tensor,
        comment_emb: torch.Tensor,
        has_text: torch.Tensor,
        rating: torch.Tensor,
        gap_s: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One event per user -> (new_state, interest, long_term, short_term); the ``step.onnx`` graph."""
        return self.update(state, self.features(item_vec, event_type, comment_emb, has_text, rating, gap_s))

    def update(
        self, state: torch.Tensor, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The recurrent part of ``step``, from the event's feature vector ``x``."""
        h, c, ema, mass = self.unpack(state)
        lstm = self.lstm
        gates = F.linear(x, lstm.weight_ih_l0, lstm.bias_ih_l0) + F.linear(h, lstm.weight_hh_l0, lstm.bias_hh_l0)
        i, f, g, o = gates.chunk(4, dim=-1)  # nn.LSTM's gate order
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        if self.config.use_long_term:
            rate, value = self.long_inputs(x)
            mass = mass + rate * (1.0 - mass)
            # rate / mass is in (0, 1] (mass >= rate), and 1 on a user's first event
            ema = ema + rate / mass.clamp(min=MIN_MASS) * (value - ema)
        interest, long, short = self.mix(h, ema, x)
        return torch.cat([h, c, ema, mass], dim=-1), interest, long, short

    def long_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The long-term average's rate and the value it moves towards, from the event alone."""
        # the logistic written out: ONNX Runtime's Sigmoid kernel is exact to ~1e-8 absolute, so a saturated
        # rate (~1e-8, as trained models reach) was off by tens of percent and so was rate / mass: one MovieLens
        # model's step differed from torch by 0.1 (of 12); with exp and a division both agree to 5e-6
        rate = MAX_LONG_RATE / (1.0 + torch.exp(-self.long_rate(x)))
        weight = 2.0 * torch.tanh(self.long_weight(x)) + 1.0  # in (-1, 3), 1 at start
        return rate, weight * self.long_in(x)

    def mix(
        self, h: torch.Tensor, ema: torch.Tensor, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(interest, long-term, short-term) vectors from the updated paths; any leading shape."""
        # the current item enters the short-term vector directly too: "more like this one" is easy to learn
        short = self.short_out(self.drop(h)) + self.item_skip(x[..., : self.config.dim])
        if not self.config.use_long_term:
            return short, torch.zeros_like(short), short
        long = self.long_out(ema)
        gate = torch.sigmoid(self.gate(torch.cat([h, ema, x], dim=-1)))
        return gate * short + (1.0 - gate) * long, long, short

    # ---- sequences ---------------------------------------------------------------------------
    def initial_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.config.state_dim, device=self.item_id.weight.device)

    def run(
        self,
        state: torch.Tensor | None,
        item_vec: torch.Tensor,
        event_type: torch.Tensor,
        comment_emb: torch.Tensor,
        has_text: torch.Tensor,
        rating: torch.Tensor,
        gap_s: torch.Tensor,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``step`` over ``[B, T]`` events -> (interest [B, T, D], state after each user's last event).

        The same function as stepping ``step`` one event at a time (a test holds them equal), computed
        for training speed: the features and every map of the event alone in one pass, the LSTM in its
        fused kernel, only the long-term average's elementwise update in a loop over time. Events of
        user b are its first ``lengths[b]`` positions (all ``T`` when None); interests past them are
        meaningless and the returned state is the one after the last real event."""
        x = self.features(item_vec, event_type, comment_emb, has_text, rating, gap_s)
        batch, width = x.shape[:2]
        state = self.initial_state(batch) if state is None else state
        if width == 0:
            return x.new_zeros(batch, 0, self.config.dim), state
        h, c, ema, mass = self.unpack(state)
        lengths = torch.full((batch,), width) if lengths is None else lengths
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        out, (h_n, c_n) = self.lstm(packed, (h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous()))
        hs, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=width)
        last = (lengths - 1).clamp(min=0)
        rows = torch.arange(batch)
        if self.config.use_long_term:
            rates, values = self.long_inputs(x)
            emas, masses = [], []
            for rate, value in zip(rates.unbind(1), values.unbind(1), strict=True):  # unbind: one backward node
                mass = mass + rate * (1.0 - mass)
                ema = ema + rate / mass.clamp(min=MIN_MASS) * (value - ema)
                emas.append(ema)
                masses.append(mass)
            ema_seq, mass_seq = torch.stack(emas, dim=1), torch.stack(masses, dim=1)
            ema, mass = ema_seq[rows, last], mass_seq[rows, last]
        else:
            ema_seq = ema.unsqueeze(1).expand(-1, width, -1)
        interest, _, _ = self.mix(hs, ema_seq, x)
        keep = (lengths > 0).unsqueeze(-1)  # a user without events keeps the state it came with
        new_state = torch.cat([h_n[0], c_n[0], ema, mass], dim=-1)
        return interest, torch.where(keep, new_state, state)

    def forward(
        self,
        items: torch.Tensor,
        event_type: torch.Tensor,
        comment_emb: torch.Tensor,
        has_text: torch.Tensor,
        rating: torch.Tensor,
        gap_s: torch.Tensor,
        targets: torch.Tensor | None = None,
        state: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores ``[B, T, n_items]`` of the next item after each event, and the full-softmax loss
        over ``targets`` (item rows, -1 = no target) when given."""
        item_vecs = self.item_vectors()
        interest, _ = self.run(state, item_vecs[items], event_type, comment_emb, has_text, rating, gap_s)
        scores = interest @ item_vecs.T
        loss = None
        if targets is not None:
            loss = F.cross_entropy(scores.flatten(0, 1), targets.flatten(), ignore_index=-1)
        return scores, loss
