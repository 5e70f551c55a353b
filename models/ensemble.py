"""Several interest models trained apart (each its own seed), served as one.

The ensemble's vectors are its members' side by side and a user's state is their states side by
side, so the score dot(interest, item) is the sum of the members' scores and the served graphs keep
the single model's signature, only wider: workers, bundles and the registry do not know how many
members a model has. Members are trained independently (``models.train``, one process each):
averaging models whose errors differ is what helps, while one model of twice the width did worse.
MovieLens test NDCG@10, stepped as served: one member 0.059 (seeds 0 and 1; 0.053 and 0.050 for
seeds 2 and 3), dim 128 0.050, two members 0.071 (seeds 0 + 1; 0.059-0.071 over the six pairs of
those four seeds, mean 0.064), three 0.063-0.070, four 0.069.
"""

from __future__ import annotations

import torch
from torch import nn

from models.interest_model import InterestModel, ModelConfig


class InterestEnsemble(nn.Module):
    def __init__(self, config: ModelConfig, members: list[InterestModel] | None = None) -> None:
        super().__init__()
        members = members if members is not None else [InterestModel(config.member) for _ in range(config.members)]
        if len(members) != config.members or any(m.config != config.member for m in members):
            raise ValueError(f"an ensemble of {config.members} needs that many members of config {config.member}")
        self.config = config
        self.members = nn.ModuleList(members)

    @property
    def item_text_emb(self) -> torch.Tensor:
        """The text embeddings of the item table rows (every member holds the same)."""
        return self.members[0].item_text_emb

    def item_tower(self, text_emb: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.item_tower(text_emb) for m in self.members], dim=-1)

    def item_vectors(self) -> torch.Tensor:
        return torch.cat([m.item_vectors() for m in self.members], dim=-1)

    def initial_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.config.state_dim, device=self.item_text_emb.device)

    def step(
        self, state: torch.Tensor, item_vec: torch.Tensor, *event: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``InterestModel.step`` of every member on its slice of the state and of the item vector;
        ``event`` (type, comment embedding, has-text, rating, gap) is the same for all."""
        member = self.config.member
        states = state.split(member.state_dim, dim=-1)
        items = item_vec.split(member.dim, dim=-1)
        outs = [m.step(s, v, *event) for m, s, v in zip(self.members, states, items, strict=True)]
        return tuple(torch.cat(parts, dim=-1) for parts in zip(*outs, strict=True))  # type: ignore[return-value]


Model = InterestModel | InterestEnsemble


def make_model(config: ModelConfig) -> Model:
    """The served model of ``config``: one member as itself, several as an ensemble."""
    return InterestModel(config) if config.members == 1 else InterestEnsemble(config)


def members_of(model: Model) -> list[InterestModel]:
    return list(model.members) if isinstance(model, InterestEnsemble) else [model]


def assemble(config: ModelConfig, members: list[InterestModel]) -> Model:
    return members[0] if config.members == 1 else InterestEnsemble(config, members)
