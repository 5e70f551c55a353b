"""Encoder post-processing on ONNX Runtime's own tools: transformer fusions and int8 quantization."""

from __future__ import annotations

import logging
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.optimizer import optimize_model

log = logging.getLogger(__name__)

# Per-channel int8 weights keep MiniLM's embeddings within cosine ~0.99 of fp32 (per-tensor: ~0.95);
# only MatMul is quantized (Gather of the embedding table gained nothing and lost accuracy).
INT8_OPTIONS = {"weight_type": "QInt8", "per_channel": True, "op_types": ["MatMul"]}


def optimize_encoder(src: Path, dst: Path, num_heads: int, hidden_size: int) -> dict[str, int]:
    """onnxruntime's BERT fusions (attention, skip layer norm, gelu); returns the fused-op counts."""
    model = optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=0)
    model.save_model_to_file(str(dst))
    fused = {op: n for op, n in model.get_fused_operator_statistics().items() if n}
    log.info("encoder fusions: %s", fused)
    return fused


class _NoPreprocessHint(logging.Filter):
    """quantize_dynamic logs a hint on the root logger that does not apply to dynamic quantization."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def quantize_encoder(src: Path, dst: Path) -> dict[str, object]:
    """Dynamic int8 quantization for CPU; returns the options used (recorded in the manifest)."""
    hint_filter = _NoPreprocessHint()
    logging.getLogger().addFilter(hint_filter)
    try:
        _quantize(src, dst)
    finally:
        logging.getLogger().removeFilter(hint_filter)
    return dict(INT8_OPTIONS)


def _quantize(src: Path, dst: Path) -> None:
    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType[INT8_OPTIONS["weight_type"]],
        per_channel=INT8_OPTIONS["per_channel"],
        op_types_to_quantize=INT8_OPTIONS["op_types"],
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # the fused graph's contrib ops
    )
