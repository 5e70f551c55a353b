"""torch module -> ONNX file with a fixed signature, then validation against torch on fresh shapes.

The TorchScript exporter (``dynamo=False``) is used on purpose: with torch 2.13 the dynamo
exporter takes ~6x longer on MiniLM, names an internal value ``embedding`` (clashing with the
fixed output name) and yields a BERT graph onnxruntime's transformer fusions do not recognise.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from export.exceptions import AtolError, ExportError, ShapeError
from export.signatures import GraphSpec, io_mismatch

DEFAULT_OPSET = 17


def export_onnx(
    module: torch.nn.Module, sample: Sequence[torch.Tensor], spec: GraphSpec, path: Path, opset: int = DEFAULT_OPSET
) -> None:
    """Trace ``module`` on ``sample`` (one tensor per ``spec`` input, in order) into ``path``."""
    module.eval()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
        torch.onnx.export(
            module,
            tuple(sample),
            str(path),
            input_names=spec.input_names,
            output_names=spec.output_names,
            dynamic_axes=spec.dynamic_axes(),
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


@dataclass(frozen=True)
class Parity:
    """Largest difference between an exported graph's outputs and torch's: absolute, and relative to
    the output's scale (its largest absolute value, at least 1)."""

    max_abs_diff: float
    max_rel_diff: float


def validate_onnx(
    path: Path, spec: GraphSpec, module: torch.nn.Module, cases: Sequence[Sequence[torch.Tensor]], rtol: float
) -> Parity:
    """Run ``path`` on ONNX Runtime and ``module`` on torch over ``cases`` (shapes other than the
    export sample's), raising ``ShapeError``, or ``AtolError`` when an output differs by more than
    ``rtol`` times its scale.

    Relative, because float32 rounding grows with the values: the same graph differs from torch by
    1e-6 on outputs of size ~1 and by 1e-4 on a trained model whose interest values reach ~50; below
    a scale of 1 the bound is ``rtol`` absolute."""
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception classes
        raise ExportError(f"{path.name} does not load in ONNX Runtime: {exc}") from exc
    mismatch = io_mismatch(session, spec)
    if mismatch:
        raise ShapeError(mismatch)
    worst_abs = worst_rel = 0.0
    for case in cases:
        with torch.inference_mode():
            expected = module(*case)
        expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
        feeds = {t.name: x.numpy() for t, x in zip(spec.inputs, case, strict=True)}
        got = session.run(spec.output_names, feeds)
        for name, want, have in zip(spec.output_names, expected, got, strict=True):
            if tuple(want.shape) != have.shape:
                raise ShapeError(f"{spec.file}: {name} has shape {have.shape}, torch gives {tuple(want.shape)}")
            if not have.size:
                continue
            diff = float(np.abs(want.numpy() - have).max())
            scale = max(1.0, float(want.abs().max()))
            if not diff <= rtol * scale:  # also catches NaN
                raise AtolError(
                    f"{spec.file}: {name} differs from torch by {diff:.2e}, {diff / scale:.2e} of its scale "
                    f"{scale:.3g} > {rtol:.0e}"
                )
            worst_abs, worst_rel = max(worst_abs, diff), max(worst_rel, diff / scale)
    return Parity(worst_abs, worst_rel)
