"""Worker fixtures: a real tiny bundle (export's fixtures: random 2-layer BERT encoder, untrained tiny
interest model over 20 items), a registry serving it, and its loaded runtime.

Session-scoped
    ``tiny_bundle``         from tests/export/conftest.py (through tests/stream_app/conftest.py).
    ``runtime``             ``load_runtime(tiny_bundle)`` (verified, smoke-tested).
    ``other_bundle``        the same architecture with other weights: a second model version.
Per test
    ``registry``            a fresh registry dir with ``tiny_bundle`` published and promoted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def runtime(tiny_bundle: Path):
    from export.runtime import load_runtime

    return load_runtime(tiny_bundle)


@pytest.fixture(scope="session")
def other_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    import torch

    from export.bundle import export_bundle

    ckpt = Path(shutil.copytree(tiny_checkpoint, tmp_path_factory.mktemp("other") / "ckpt"))
    weights = torch.load(ckpt / "model.pt", weights_only=True)
    torch.manual_seed(1)
    for tensor in weights.values():
        if tensor.is_floating_point():
            tensor.add_(0.1 * torch.randn_like(tensor))
    torch.save(weights, ckpt / "model.pt")
    out = tmp_path_factory.mktemp("other-bundle") / "bundle"
    export_bundle(ckpt, out)
    return out


@pytest.fixture
def registry(tmp_path: Path, tiny_bundle: Path) -> Path:
    from export.registry import Registry

    root = tmp_path / "registry"
    reg = Registry(root)
    reg.promote(reg.publish(tiny_bundle))
    return root
