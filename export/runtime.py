"""The worker-side model: comment encoder, interest step and item tower on ONNX Runtime.

``load_runtime`` checks every byte of a bundle (and its signature when a key is configured),
opens one reusable session per graph, checks each graph's inputs and outputs against the
manifest, and runs a smoke inference (which also warms the sessions up) before returning.
Imports no torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np

from export.comment_tokenizer import CommentTokenizer
from export.exceptions import BundleError, ManifestError
from export.integrity import member_path, verify_bundle
from export.item_table import load_item_table
from export.manifest import Manifest
from export.sessions import CPU, ORT_ERRORS, ModelSession, SessionFactory, SessionOptions
from export.signatures import ENCODER, ENCODER_INT8, ITEM_TOWER, STEP, io_mismatch
from stream_app.exceptions import ConfigError

if TYPE_CHECKING:
    from stream_app.settings import Settings

EncoderPrecision = Literal["auto", "fp32", "int8"]


@dataclass(frozen=True)
class RuntimeOptions:
    sessions: SessionOptions = field(default_factory=SessionOptions)
    signing_key: str | None = None
    encoder_precision: EncoderPrecision = "auto"  # auto = int8 on CPU when the bundle has it
    encode_batch_size: int = 32

    @classmethod
    def from_settings(cls, settings: Settings) -> RuntimeOptions:
        key = settings.bundle_signing_key
        return cls(
            sessions=SessionOptions.from_settings(settings),
            signing_key=key.get_secret_value() if key is not None else None,
            encoder_precision=settings.encoder_precision,
            encode_batch_size=settings.encode_batch_size,
        )


class StepOutput(NamedTuple):
    new_state: np.ndarray  # float32 [B, S]
    interest: np.ndarray  # float32 [B, D]
    long_term: np.ndarray
    short_term: np.ndarray


class ModelRuntime:
    """One bundle loaded for serving; a hot-swap replaces the whole object."""

    def __init__(self, bundle_dir: Path, manifest: Manifest, options: RuntimeOptions) -> None:
        self.bundle_dir = bundle_dir
        self.manifest = manifest
        self.version = manifest.version
        self.text_dim, self.dim, self.state_dim = manifest.text_dim, manifest.dim, manifest.state_dim
        self.encode_batch_size = options.encode_batch_size
        factory = SessionFactory(options.sessions)
        self._step = self._session(factory, STEP)
        self._item_tower = self._session(factory, ITEM_TOWER)
        self.encoder_graph = self._encoder_graph(options.encoder_precision, factory.provider)
        # the int8 encoder is a CPU graph: on CUDA its quantized products fell back with 85 copies
        # between devices and a mean cosine to fp32 of 0.986 (0.99+ on CPU), so it runs on the CPU
        int8_on_cpu = self.encoder_graph == ENCODER_INT8 and factory.provider != CPU
        cpu = SessionFactory(replace(options.sessions, device="cpu")) if int8_on_cpu else factory
        self._encoder = self._session(cpu, self.encoder_graph)
        self.provider, self.encoder_provider = factory.provider, self._encoder.provider
        self.tokenizer = CommentTokenizer(
            member_path(bundle_dir, manifest.tokenizer.tokenizer_json), manifest.tokenizer.max_length
        )
        self.item_ids, self.item_matrix = self._item_table()
        self.item_popularity = self._item_popularity()

    def _path(self, relative: str) -> Path:
        return member_path(self.bundle_dir, relative)

    def _session(self, factory: SessionFactory, graph: str) -> ModelSession:
        spec = self.manifest.graphs.get(graph)
        if spec is None:
            raise ManifestError(f"bundle {self.version} has no {graph} graph; re-export it")
        try:
            session = factory.session(self._path(spec.file))
        except ORT_ERRORS as exc:
            raise BundleError(f"{spec.file} of bundle {self.version} does not load: {exc}") from None
        mismatch = io_mismatch(session.session, spec)
        if mismatch:
            raise ManifestError(f"{graph} graph of bundle {self.version}: {mismatch}")
        return session

    def _encoder_graph(self, precision: EncoderPrecision, provider: str) -> str:
        has_int8 = ENCODER_INT8 in self.manifest.graphs
        if precision == "int8" and not has_int8:
            raise ConfigError(
                f"encoder precision int8 asked for, but bundle {self.version} has no int8 encoder; "
                "export with --int8 or use auto"
            )
        use_int8 = precision == "int8" or (precision == "auto" and has_int8 and provider == CPU)
        return ENCODER_INT8 if use_int8 else ENCODER

    def _item_table(self) -> tuple[list[str], np.ndarray]:
        table = self.manifest.item_table
        matrix = load_item_table(self._path(table.vectors), table.dtype, (table.count, self.dim))
        ids = json.loads(self._path(table.ids).read_text(encoding="utf-8"))
        if not isinstance(ids, list) or len(ids) != table.count or not all(isinstance(i, str) for i in ids):
            raise ManifestError(f"{table.ids} must list {table.count} item ids (strings)")
        return ids, matrix

    def _item_popularity(self) -> np.ndarray | None:
        table = self.manifest.item_table
        if table.popularity is None:
            return None
        counts = np.load(self._path(table.popularity), allow_pickle=False)
        if counts.shape != (table.count,) or not np.isfinite(counts).all():
            raise ManifestError(f"{table.popularity} is {counts.dtype} {counts.shape}, expected finite [{table.count}]")
        return counts.astype(np.float64)

    # ---- inference -------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Comment embeddings ``[n, T]`` float32, unit length; long texts are truncated."""
        out = np.zeros((len(texts), self.text_dim), dtype=np.float32)
        for rows, feeds in self.tokenizer.batches(texts, self.encode_batch_size):
            out[rows] = self._encoder.run(feeds)[0]
        return out

    def item_vectors(self, text_emb: np.ndarray) -> np.ndarray:
        """Text-only vectors ``[n, D]`` for items the bundle's table does not hold."""
        text_emb = np.ascontiguousarray(text_emb, dtype=np.float32)
        if len(text_emb) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._item_tower.run({"text_emb": text_emb})[0]

    def step(
        self,
        state: np.ndarray,
        item_vec: np.ndarray,
        event_type: np.ndarray,
        comment_emb: np.ndarray,
        has_text: np.ndarray,
        rating: np.ndarray,
        gap_s: np.ndarray,
    ) -> StepOutput:
        """One event per user (batched over users); a new user's ``state`` is zeros."""
        if len(state) == 0:
            empty = np.zeros((0, self.dim), dtype=np.float32)
            return StepOutput(np.zeros((0, self.state_dim), dtype=np.float32), empty, empty, empty)
        f32 = np.float32
        feeds = {
            "state": np.ascontiguousarray(state, dtype=f32),
            "item_vec": np.ascontiguousarray(item_vec, dtype=f32),
            "event_type": np.ascontiguousarray(event_type, dtype=np.int64),
            "comment_emb": np.ascontiguousarray(comment_emb, dtype=f32),
            "has_text": np.ascontiguousarray(has_text, dtype=f32),
            "rating": np.ascontiguousarray(rating, dtype=f32),
            "gap_s": np.ascontiguousarray(gap_s, dtype=f32),
        }
        return StepOutput(*self._step.run(feeds))

    # ---- smoke inference -------------------------------------------------------------------
    def smoke_test(self) -> None:
        """Run every graph once on a small batch; raises ``BundleError`` unless outputs look sane."""
        try:
            emb = self.encode(["smoke test: the strings sound bright and stay in tune", ""])
            vec = self.item_vectors(emb)
            n_types = int(self.manifest.model_config.get("n_event_types", 1))
            out = self.step(
                np.zeros((2, self.state_dim)),
                vec,
                np.array([0, n_types - 1]),
                emb,
                np.array([1.0, 0.0]),
                np.array([5.0, -1.0]),
                np.array([0.0, 3600.0]),
            )
        except ORT_ERRORS as exc:
            raise BundleError(f"smoke inference of bundle {self.version} failed: {exc}") from None
        shapes = {
            "embedding": (emb.shape, (2, self.text_dim)),
            "item_vec": (vec.shape, (2, self.dim)),
            **{name: (value.shape, (2, self.dim)) for name, value in zip(StepOutput._fields[1:], out[1:], strict=True)},
            "new_state": (out.new_state.shape, (2, self.state_dim)),
        }
        wrong = {name: got for name, (got, want) in shapes.items() if got != want}
        if wrong:
            raise BundleError(f"smoke inference of bundle {self.version} gave wrong shapes {wrong}")
        if not all(np.isfinite(a).all() for a in (emb, vec, *out)):
            raise BundleError(f"smoke inference of bundle {self.version} gave NaN or infinite values")
        if not np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-2):
            raise BundleError(f"encoder of bundle {self.version} does not return unit vectors")


def load_runtime(bundle_dir: str | os.PathLike, options: RuntimeOptions | None = None) -> ModelRuntime:
    """A verified, warmed-up runtime for ``bundle_dir``; raises ``BundleError`` on any failure."""
    options = options or RuntimeOptions()
    root = Path(bundle_dir)
    manifest = verify_bundle(root, options.signing_key)
    runtime = ModelRuntime(root, manifest, options)
    runtime.smoke_test()
    return runtime
