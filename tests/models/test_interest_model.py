import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.exceptions import CheckpointError
from models.interest_model import InterestModel, ModelConfig

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
def test_padding_keeps_state(model: InterestModel) -> None:
    ev = random_events(1)
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[:, T // 2 :] = False
    table = model.item_vectors()
    vecs = table[ev.pop("items")]
    _, padded = model.run(None, vecs, **ev, valid=valid)
    _, short = model.run(None, vecs[:, : T // 2], **{k: v[:, : T // 2] for k, v in ev.items()})
    assert (padded - short).abs().max() <= 1e-6


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
