"""ONNX Runtime sessions: the execution provider is chosen once per process and reported.

CUDA is asked for only when an NVIDIA device node exists and onnxruntime lists the CUDA
provider, so a CPU machine with onnxruntime-gpu never logs provider-load errors. When CUDA is
asked for but its libraries do not load, ONNX Runtime falls back to CPU; that is detected on the
first session and CPU is kept from then on. On CUDA, runs go through IO binding.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state
from prometheus_client import Info

from stream_app.exceptions import ConfigError

if TYPE_CHECKING:
    from stream_app.settings import Settings

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# fp32 graphs compute in fp32 on the GPU too: the CUDA provider's TF32 default put the exported
# encoder and step 2e-4 away from torch on an H200 (parity is <= 1e-4); fp16 graphs are the fast path
CUDA_OPTIONS = {"use_tf32": "0"}
Device = Literal["auto", "cpu", "cuda"]
GraphOptimization = Literal["disable", "basic", "extended", "all"]

GRAPH_OPTIMIZATION = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}

# what onnxruntime raises when a model does not load or run (its own classes derive from Exception)
ORT_ERRORS: tuple[type[Exception], ...] = (
    RuntimeError,
    ValueError,
    *(v for v in vars(ort_state).values() if isinstance(v, type) and issubclass(v, Exception)),
)

PROVIDER_INFO = Info("istream_onnx_provider", "ONNX Runtime execution provider the model sessions run on")

# ONNX Runtime's CPU SkipLayerNormalization kernel is slower here than the Add + LayerNormalization
# it replaces: the int8 MiniLM encoder spends 15% of its time in it, and runs 1.17x faster (batch 32,
# 1 thread) without the fusion; fp32 graphs are unaffected. CUDA keeps it (a fused kernel wins there).
CPU_DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]

_lock = threading.Lock()
_reported: str | None = None
_cuda_failed = False  # a session asked for CUDA and got CPU: its libraries do not load here


@dataclass(frozen=True)
class SessionOptions:
    device: Device = "auto"
    intra_op_threads: int = 0  # 0 = ONNX Runtime's default (one per core)
    inter_op_threads: int = 0
    graph_optimization: GraphOptimization = "all"
    # Spinning threads win a little on idle cores; on cores shared with the Kafka client and other
    # processes they cost a lot (MiniLM, 2 busy cores: batch-1 throughput 44 -> 68 sentences/s without).
    allow_spinning: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionOptions:
        return cls(
            device=settings.ort_device,
            intra_op_threads=settings.ort_intra_op_threads,
            inter_op_threads=settings.ort_inter_op_threads,
            graph_optimization=settings.ort_graph_optimization,
            allow_spinning=settings.ort_allow_spinning,
        )

    def ort_options(self) -> ort.SessionOptions:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.intra_op_threads
        opts.inter_op_num_threads = self.inter_op_threads
        opts.graph_optimization_level = GRAPH_OPTIMIZATION[self.graph_optimization]
        spin = "1" if self.allow_spinning else "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
        return opts


def gpu_present() -> bool:
    """An NVIDIA device node exists (checked without loading any CUDA library)."""
    return any(name.startswith("nvidia") and name[6:].isdigit() for name in os.listdir("/dev"))


def cuda_candidate(device: Device) -> bool:
    """Whether CUDA should be tried for ``device``; raises when CUDA is demanded but cannot be had."""
    if device == "cpu":
        return False
    usable = gpu_present() and CUDA in ort.get_available_providers()
    if device == "cuda" and not usable:
        raise ConfigError(
            "ISTREAM_ORT_DEVICE=cuda but no NVIDIA GPU or CUDA-enabled onnxruntime is present; use auto or cpu"
        )
    return usable


def _report(provider: str) -> str:
    """Record the provider the process runs on; logged once, and exported as a metric label."""
    global _reported
    with _lock:
        if _reported != provider:
            log.info("ONNX Runtime execution provider: %s", provider)
            PROVIDER_INFO.info({"provider": provider, "onnxruntime": ort.__version__})
            _reported = provider
    return provider


class ModelSession:
    """One reusable ONNX Runtime session; ``run`` takes and returns numpy arrays."""

    def __init__(self, session: ort.InferenceSession, provider: str) -> None:
        self.session = session
        self.provider = provider
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        if self.provider != CUDA:
            return self.session.run(self.output_names, dict(feeds))
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in self.output_names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()


class SessionFactory:
    """Makes sessions with one set of options; ``provider`` is what they actually run on."""

    def __init__(self, options: SessionOptions | None = None) -> None:
        self.options = options or SessionOptions()
        self.provider = CUDA if cuda_candidate(self.options.device) and not _cuda_failed else CPU

    def session(self, model_path: str | os.PathLike) -> ModelSession:
        global _cuda_failed
        providers: list = [(CUDA, CUDA_OPTIONS), CPU] if self.provider == CUDA else [CPU]
        session = ort.InferenceSession(
            str(Path(model_path)),
            self.options.ort_options(),
            providers=providers,
            disabled_optimizers=None if self.provider == CUDA else CPU_DISABLED_OPTIMIZERS,
        )
        if self.provider == CUDA and session.get_providers()[0] != CUDA:
            if self.options.device == "cuda":
                raise ConfigError("the CUDA execution provider did not load (CUDA/cuDNN libraries); use auto or cpu")
            _cuda_failed = True
            self.provider = CPU
        _report(self.provider)
        return ModelSession(session, self.provider)
