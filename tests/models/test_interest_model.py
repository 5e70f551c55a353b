import json

import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.ensemble import InterestEnsemble
from models.exceptions import CheckpointError
from models.interest_model import TINY, InterestModel, ModelConfig

B, T, N, TEXT = 5, 12, 30, 24


def random_events(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    has_text = (torch.rand(B, T, generator=g) < 0.5).float()
    rating = torch.where(
        torch.rand(B, T, generator=g) < 0.5, torch.rand(B, T, generator=g) * 5, torch.full((B, T), -1.0)
    )
    return {
        "items": torch.randint(0, N, (B, T), generator=g),
        "event_type": torch.randint(0, 6, (B, T), generator=g),
        "comment_emb": torch.randn(B, T, TEXT, generator=g) * has_text.unsqueeze(-1),
        "has_text": has_text,
        "rating": rating,
        "gap_s": torch.rand(B, T, generator=g) * 1e6,
    }


@pytest.fixture(params=[{}, {"use_long_term": False}, {"use_comment_text": False, "use_item_text": False}])
def model(request) -> InterestModel:
    torch.manual_seed(0)
    model = InterestModel(ModelConfig.tiny(N, text_dim=TEXT, **request.param))
    model.item_text_emb.normal_()
    return model.eval()


@torch.no_grad()
def test_step_equals_sequence(model: InterestModel) -> None:
    ev = random_events()
    scores, loss = model(**ev)
    assert scores.shape == (B, T, N) and loss is None
    table = model.item_vectors()
    state = torch.zeros(B, model.config.state_dim)
    for t in range(T):
        state, interest, long, short = model.step(
            state, table[ev["items"][:, t]], ev["event_type"][:, t], ev["comment_emb"][:, t], ev["has_text"][:, t],
            ev["rating"][:, t], ev["gap_s"][:, t],
        )  # fmt: skip
        assert (interest @ table.T - scores[:, t]).abs().max() <= 1e-5
        assert long.shape == short.shape == interest.shape == (B, model.config.dim)
    _, final = model.run(None, table[ev.pop("items")], **ev)
    assert (final - state).abs().max() <= 1e-5


@torch.no_grad()
def test_lengths_end_each_users_sequence(model: InterestModel) -> None:
    ev = random_events(1)
    lengths = torch.tensor([T, T // 2, 0, 1, 3])
    table = model.item_vectors()
    vecs = table[ev.pop("items")]
    start = torch.randn(B, model.config.state_dim) * 0.1
    start[:, -model.config.long_dim :] = torch.rand(B, model.config.long_dim)  # masses in (0, 1)
    interest, state = model.run(start, vecs, **ev, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        alone, end = model.run(start[b : b + 1], vecs[b : b + 1, :n], **{k: v[b : b + 1, :n] for k, v in ev.items()})
        assert (end - state[b]).abs().max() <= 1e-6  # a user without events keeps its state
        assert alone.shape == (1, n, model.config.dim)
        assert n == 0 or (alone - interest[b : b + 1, :n]).abs().max() <= 1e-6


def test_checkpoint_of_the_lstm_cell_era_loads(model: InterestModel) -> None:
    """Weights saved when the short-term path was an LSTMCell named ``cell`` load into the fused LSTM."""
    old = {
        (k.replace("lstm.", "cell.").removesuffix("_l0") if k.startswith("lstm.") else k): v
        for k, v in model.state_dict().items()
    }
    assert "cell.weight_ih" in old
    fresh = InterestModel(model.config)
    fresh.load_state_dict(old)
    assert torch.equal(fresh.lstm.weight_hh_l0, model.lstm.weight_hh_l0)


def test_loss_trains_and_ignores_missing_targets() -> None:
    torch.manual_seed(0)
    model = InterestModel(ModelConfig.tiny(N, text_dim=TEXT))
    ev = random_events(2)
    targets = ev["items"].roll(-1, dims=1)
    targets[:, -1] = -1
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        _, loss = model(**ev, targets=targets)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first * 0.7


def test_item_without_id_row_gets_the_text_only_vector(model: InterestModel) -> None:
    model.item_has_id[3] = 0.0
    with torch.no_grad():
        table = model.item_vectors()
        tower = model.item_tower(model.item_text_emb)
    assert torch.allclose(table[3], tower[3])
    assert not torch.allclose(table[4], tower[4]) or not model.config.use_item_text


def test_checkpoint_round_trip(model: InterestModel, tmp_path) -> None:
    ids = [f"item-{i}" for i in range(N)]
    save_checkpoint(tmp_path, model, ids, history={"epochs": []})
    loaded = load_checkpoint(tmp_path)
    assert loaded.item_ids == ids and loaded.config == model.config and loaded.history == {"epochs": []}
    ev = random_events(3)
    with torch.no_grad():
        assert torch.equal(loaded.model(**ev)[0], model(**ev)[0])


def test_checkpoint_errors_say_what_to_do(model: InterestModel, tmp_path) -> None:
    with pytest.raises(CheckpointError, match="istream train"):
        load_checkpoint(tmp_path / "missing")
    save_checkpoint(tmp_path, model, [str(i) for i in range(N)])
    (tmp_path / "items.json").write_text('["just-one"]')
    with pytest.raises(CheckpointError, match="lists 1 items"):
        load_checkpoint(tmp_path)


@pytest.fixture
def ensemble() -> InterestEnsemble:
    torch.manual_seed(0)
    config = ModelConfig.tiny(N, text_dim=TEXT, members=3)
    model = InterestEnsemble(config)
    text = torch.randn(N, TEXT)
    for member in model.members:
        member.item_text_emb.copy_(text)
    return model.eval()


@torch.no_grad()
def test_ensemble_is_its_members_side_by_side(ensemble: InterestEnsemble) -> None:
    ev = random_events(4)
    table, members = ensemble.item_vectors(), list(ensemble.members)
    assert table.shape == (N, ensemble.config.vector_dim) == (N, 3 * TINY["dim"])
    state = ensemble.initial_state(B)
    member_states = [m.initial_state(B) for m in members]
    assert state.shape[1] == ensemble.config.state_dim == sum(s.shape[1] for s in member_states)
    for t in range(T):
        event = [ev[k][:, t] for k in ("event_type", "comment_emb", "has_text", "rating", "gap_s")]
        state, interest, long, short = ensemble.step(state, table[ev["items"][:, t]], *event)
        outs = [
            m.step(s, m.item_vectors()[ev["items"][:, t]], *event) for m, s in zip(members, member_states, strict=True)
        ]
        member_states = [o[0] for o in outs]
        for got, parts in zip((state, interest, long, short), zip(*outs, strict=True), strict=True):
            assert torch.equal(got, torch.cat(parts, dim=-1))
        # the ensemble's score is the sum of its members'
        member_scores = sum(o[1] @ m.item_vectors().T for o, m in zip(outs, members, strict=True))
        assert (interest @ table.T - member_scores).abs().max() <= 1e-5
    text = torch.randn(4, TEXT)
    assert torch.equal(ensemble.item_tower(text), torch.cat([m.item_tower(text) for m in members], dim=-1))


def test_ensemble_checkpoint_round_trip(ensemble: InterestEnsemble, tmp_path) -> None:
    save_checkpoint(tmp_path, ensemble, [f"item-{i}" for i in range(N)])
    loaded = load_checkpoint(tmp_path)
    assert isinstance(loaded.model, InterestEnsemble) and loaded.config == ensemble.config
    with torch.no_grad():
        assert torch.equal(loaded.model.item_vectors(), ensemble.item_vectors())
        assert all(torch.equal(m.item_text_emb, ensemble.item_text_emb) for m in loaded.model.members)


def test_a_checkpoint_from_before_ensembles_loads_as_one_model(model: InterestModel, tmp_path) -> None:
    save_checkpoint(tmp_path, model, [f"item-{i}" for i in range(N)])
    config = json.loads((tmp_path / "config.json").read_text())
    del config["members"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = load_checkpoint(tmp_path)
    assert isinstance(loaded.model, InterestModel) and loaded.config.members == 1


def test_an_interest_model_is_one_member() -> None:
    with pytest.raises(ValueError, match="one member"):
        InterestModel(ModelConfig(n_items=N, members=2))
    with pytest.raises(ValueError, match="needs that many members"):
        InterestEnsemble(ModelConfig.tiny(N, members=2), [InterestModel(ModelConfig.tiny(N))])


@torch.no_grad()
def test_a_model_started_from_the_item_texts_ranks_by_text_similarity_before_any_training() -> None:
    # items of three topics whose text embeddings cluster; a user who had four items of topic 0
    g = torch.Generator().manual_seed(0)
    topic = torch.arange(N) % 3
    text = (torch.randn(3, TEXT, generator=g) * 3)[topic] + torch.randn(N, TEXT, generator=g)
    history = torch.tensor([0, 3, 6, 9])

    def top_topics(config: ModelConfig) -> torch.Tensor:
        torch.manual_seed(0)
        model = InterestModel(config)
        model.item_text_emb.copy_(text)
        model.init_item_text(model.item_text_emb)
        vectors = model.item_tower(model.item_text_emb)
        assert vectors.norm(dim=1).mean() == pytest.approx(1.0, abs=0.25)  # tanh near its linear range
        table = model.eval().item_vectors()
        state = torch.zeros(1, config.state_dim)
        for item in history:
            state, interest, _, _ = model.step(
                state, table[item][None], torch.tensor([0]), torch.zeros(1, TEXT), torch.zeros(1), torch.tensor([-1.0]),
                torch.tensor([60.0]),
            )  # fmt: skip
        scores = (interest @ table.T)[0]
        scores[history] = -torch.inf
        return topic[scores.topk(6).indices]

    started = top_topics(ModelConfig.tiny(N, text_dim=TEXT))
    assert (started == 0).all(), started
