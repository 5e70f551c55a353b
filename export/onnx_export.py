"""torch module -> ONNX file with a fixed signature, then validation against torch on fresh shapes.

The TorchScript exporter (``dynamo=False``) is used on purpose: with torch 2.13 the dynamo
exporter takes ~6x longer on MiniLM, names an internal value ``embedding`` (clashing with the
fixed output name) and yields a BERT graph onnxruntime's transformer fusions do not recognise.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
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


def validate_onnx(
    path: Path, spec: GraphSpec, module: torch.nn.Module, cases: Sequence[Sequence[torch.Tensor]], atol: float
) -> float:
    """Run ``path`` on ONNX Runtime and ``module`` on torch over ``cases`` (shapes other than the
    export sample's); returns the largest absolute difference, raising ``ShapeError``/``AtolError``."""
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception classes
        raise ExportError(f"{path.name} does not load in ONNX Runtime: {exc}") from exc
    mismatch = io_mismatch(session, spec)
    if mismatch:
        raise ShapeError(mismatch)
    worst = 0.0
    for case in cases:
        with torch.inference_mode():
            expected = module(*case)
        expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
        feeds = {t.name: x.numpy() for t, x in zip(spec.inputs, case, strict=True)}
        got = session.run(spec.output_names, feeds)
        for name, want, have in zip(spec.output_names, expected, got, strict=True):
            if tuple(want.shape) != have.shape:
                raise ShapeError(f"{spec.file}: {name} has shape {have.shape}, torch gives {tuple(want.shape)}")
            diff = float(np.abs(want.numpy() - have).max()) if have.size else 0.0
            if not diff <= atol:  # also catches NaN
                raise AtolError(f"{spec.file}: {name} differs from torch by {diff:.2e} > {atol:.0e}")
            worst = max(worst, diff)
    return worst
