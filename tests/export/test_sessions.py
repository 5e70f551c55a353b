"""Session factory: provider choice, options, metric label; GPU checks skip cleanly without a GPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from export.sessions import CPU, CUDA, SessionFactory, SessionOptions, gpu_present
from stream_app.exceptions import ConfigError
from stream_app.settings import Settings

no_gpu = not gpu_present()


def test_cpu_session_with_configured_options(tiny_bundle: Path) -> None:
    options = SessionOptions(device="cpu", intra_op_threads=1, inter_op_threads=1, graph_optimization="basic")
    factory = SessionFactory(options)
    session = factory.session(tiny_bundle / "item_tower.onnx")
    assert factory.provider == session.provider == CPU
    assert session.session.get_providers() == [CPU]
    ort_options = session.session.get_session_options()
    assert (ort_options.intra_op_num_threads, ort_options.inter_op_num_threads) == (1, 1)
    assert session.input_names == ["text_emb"] and session.output_names == ["item_vec"]


def test_cpu_sessions_leave_add_and_layer_norm_unfused(tiny_bundle: Path, tmp_path: Path) -> None:
    """The fusion CPU sessions turn off exists under that name and would apply to the int8 encoder."""
    import onnx
    import onnxruntime as ort

    class Saving(SessionOptions):  # also writes the graph ONNX Runtime ends up running
        def ort_options(self) -> ort.SessionOptions:
            options = super().ort_options()
            options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
            return options

    def ops() -> set[str]:
        return {node.op_type for node in onnx.load(tmp_path / "optimized.onnx").graph.node}

    model = tiny_bundle / "encoder.int8.onnx"
    ort.InferenceSession(str(model), Saving(device="cpu").ort_options(), providers=[CPU])
    assert "SkipLayerNormalization" in ops()
    SessionFactory(Saving(device="cpu")).session(model)
    assert "SkipLayerNormalization" not in ops() and "LayerNormalization" in ops()


def test_provider_is_exposed_as_a_metric_label(tiny_bundle: Path) -> None:
    import onnxruntime as ort

    SessionFactory(SessionOptions(device="cpu")).session(tiny_bundle / "step.onnx")
    labels = {"provider": CPU, "onnxruntime": ort.__version__}
    assert REGISTRY.get_sample_value("istream_onnx_provider_info", labels) == 1.0


def test_options_from_settings() -> None:
    settings = Settings(
        ort_device="cpu",
        ort_intra_op_threads=3,
        ort_inter_op_threads=2,
        ort_graph_optimization="extended",
        ort_allow_spinning=True,
    )
    assert SessionOptions.from_settings(settings) == SessionOptions("cpu", 3, 2, "extended", allow_spinning=True)
    assert SessionOptions().ort_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.skipif(not no_gpu, reason="this machine has a GPU")
def test_auto_picks_cpu_without_gpu_and_cuda_demand_fails_clearly() -> None:
    assert SessionFactory(SessionOptions(device="auto")).provider == CPU
    with pytest.raises(ConfigError, match="no NVIDIA GPU"):
        SessionFactory(SessionOptions(device="cuda"))


def test_cpu_machine_logs_no_provider_errors(tiny_bundle: Path) -> None:
    """onnxruntime-gpu logs errors when asked for CUDA without a GPU; the factory never asks."""
    code = (
        "import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
        "from export.sessions import SessionFactory\n"
        f"s = SessionFactory().session({str(tiny_bundle / 'step.onnx')!r}); print('provider', s.provider)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    expected = CUDA if gpu_present() else CPU
    assert f"provider {expected}" in done.stdout
    assert done.stdout.count("ONNX Runtime execution provider") == 1  # logged once
    assert "error" not in done.stderr.lower(), done.stderr


@pytest.mark.gpu
@pytest.mark.skipif(no_gpu, reason="no NVIDIA GPU on this machine")
def test_gpu_runs_on_cuda_with_io_binding(tiny_bundle: Path) -> None:
    import numpy as np

    session = SessionFactory(SessionOptions(device="auto")).session(tiny_bundle / "item_tower.onnx")
    assert session.provider == CUDA
    assert session.session.get_provider_options()[CUDA]["use_tf32"] == "0"  # fp32 stays fp32
    out = session.run({"text_emb": np.ones((3, 32), dtype=np.float32)})[0]
    assert out.shape == (3, 32) and np.isfinite(out).all()  # two tiny members' 16-d vectors side by side
