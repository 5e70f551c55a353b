"""The fixed ONNX signatures of a bundle's graphs (docs/model-interface.md).

Names and dtypes never change; ``"batch"``, ``"seq"`` and ``"items"`` are dynamic axes, integers
are the model's sizes. The same structs describe the graphs in manifest.json.
"""

from __future__ import annotations

from typing import Any

import msgspec

ENCODER = "encoder"
ENCODER_INT8 = "encoder_int8"
STEP = "step"
ITEM_TOWER = "item_tower"

GRAPH_FILES = {
    ENCODER: "encoder.onnx",
    ENCODER_INT8: "encoder.int8.onnx",
    STEP: "step.onnx",
    ITEM_TOWER: "item_tower.onnx",
}

NUMPY_DTYPES = {"float32": "float32", "int64": "int64"}
# onnxruntime's NodeArg.type strings
ORT_TYPES = {"float32": "tensor(float)", "int64": "tensor(int64)"}


class TensorSpec(msgspec.Struct, frozen=True):
    name: str
    dtype: str
    shape: tuple[int | str, ...]


class GraphSpec(msgspec.Struct, frozen=True):
    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """``torch.onnx.export`` dynamic axes: every named (non-integer) dimension."""
        axes = {}
        for tensor in (*self.inputs, *self.outputs):
            named = {i: d for i, d in enumerate(tensor.shape) if isinstance(d, str)}
            if named:
                axes[tensor.name] = named
        return axes


def _f32(name: str, *shape: int | str) -> TensorSpec:
    return TensorSpec(name, "float32", shape)


def encoder_spec(text_dim: int, graph: str = ENCODER) -> GraphSpec:
    ids = TensorSpec("input_ids", "int64", ("batch", "seq"))
    mask = TensorSpec("attention_mask", "int64", ("batch", "seq"))
    return GraphSpec(GRAPH_FILES[graph], (ids, mask), (_f32("embedding", "batch", text_dim),))


def step_spec(state_dim: int, dim: int, text_dim: int) -> GraphSpec:
    inputs = (
        _f32("state", "batch", state_dim),
        _f32("item_vec", "batch", dim),
        TensorSpec("event_type", "int64", ("batch",)),
        _f32("comment_emb", "batch", text_dim),
        _f32("has_text", "batch"),
        _f32("rating", "batch"),
        _f32("gap_s", "batch"),
    )
    outputs = (
        _f32("new_state", "batch", state_dim),
        _f32("interest", "batch", dim),
        _f32("long_term", "batch", dim),
        _f32("short_term", "batch", dim),
    )
    return GraphSpec(GRAPH_FILES[STEP], inputs, outputs)


def item_tower_spec(text_dim: int, dim: int) -> GraphSpec:
    return GraphSpec(GRAPH_FILES[ITEM_TOWER], (_f32("text_emb", "items", text_dim),), (_f32("item_vec", "items", dim),))


def io_mismatch(session: Any, spec: GraphSpec) -> str | None:
    """How an onnxruntime session's inputs/outputs differ from ``spec`` (names, order, dtypes), or None."""
    found = ([(i.name, i.type) for i in session.get_inputs()], [(o.name, o.type) for o in session.get_outputs()])
    wanted = ([(t.name, ORT_TYPES[t.dtype]) for t in spec.inputs], [(t.name, ORT_TYPES[t.dtype]) for t in spec.outputs])
    if found == wanted:
        return None
    return f"{spec.file} has {found[0]} -> {found[1]}, the signature is {wanted[0]} -> {wanted[1]}"
