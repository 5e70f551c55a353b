"""ModelSwapper on a real registry with real bundles (loading = export.runtime.load_runtime)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import msgspec
import pytest

from stream_app.worker.hot_swap import ModelSwapper
from stream_app.worker.metrics import WorkerMetrics


def _swapper(registry: Path, metrics: WorkerMetrics) -> ModelSwapper:
    from export.registry import Registry
    from export.runtime import load_runtime

    return ModelSwapper(Registry(registry), registry, load_runtime, metrics, poll_s=0.0)


def _ready(swapper: ModelSwapper, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runtime = swapper.poll()
        if runtime is not None or swapper.pending is None:
            return runtime
        time.sleep(0.05)
    raise AssertionError("verification never finished")


def _refusals(metrics: WorkerMetrics, reason: str) -> float:
    return metrics.registry.get_sample_value("istream_model_refusals_total", {"reason": reason}) or 0.0


def _message(version: str, uri: str, sha256: str = "a" * 64) -> bytes:
    return msgspec.json.encode({"version": version, "uri": uri, "sha256": sha256, "created_at": "2026-11-22T00:00:00"})


def _manifest_sha256(bundle: Path) -> str:
    return hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()


def test_a_new_current_is_verified_off_the_hot_path_and_swapped_in(registry, other_bundle):
    from export.registry import Registry

    metrics = WorkerMetrics()
    swapper = _swapper(registry, metrics)
    first = swapper.load_current()
    assert swapper.poll() is None  # CURRENT unchanged: nothing to do
    reg = Registry(registry)
    second = reg.publish(other_bundle)
    reg.promote(second)
    runtime = _ready(swapper)
    assert runtime is not None and runtime.version == second != first.version
    assert metrics.registry.get_sample_value("istream_model_swaps_total") == 1.0
    reg.rollback()
    assert _ready(swapper).version == first.version  # a changed pointer swaps back, once
    assert swapper.poll() is None
    swapper.close()


def test_update_messages_are_notices_the_worker_serves_current_only(registry, other_bundle, tmp_path):
    from export.registry import Registry

    metrics = WorkerMetrics()
    swapper = _swapper(registry, metrics)
    first = swapper.load_current()
    reg = Registry(registry)
    second = reg.publish(other_bundle)  # published, never promoted
    sha = _manifest_sha256(registry / second)
    # issue 17: a message naming an unpromoted version (right or wrong sha256) moved a worker off CURRENT
    for message in (_message(second, str(registry / second)), _message(second, str(registry / second), sha)):
        swapper.notice_update(message)
    assert _refusals(metrics, "not_current") == 2 and swapper.pending is None and swapper.poll() is None
    for bad in (_message("../../etc", str(registry)), b"not json", b'{"version": ' + b"[" * 1000 + b"]" * 1000 + b"}"):
        swapper.notice_update(bad)
    assert _refusals(metrics, "not_current") == 3 and _refusals(metrics, "message") == 2
    reg.promote(second)
    serving = registry / first.version
    swapper.notice_update(_message(second, str(tmp_path / "elsewhere"), sha))  # CURRENT, but another folder
    swapper.notice_update(_message(second, str(registry / second), _manifest_sha256(serving)))  # another sha256
    assert _refusals(metrics, "message") == 3 and _refusals(metrics, "sha256") == 1
    # refused or not, a notice re-reads CURRENT at once: the worker moves to what the registry says
    assert _ready(swapper).version == second
    swapper.notice_update(_message(second, f"file://{registry / second}", sha))  # the fine-tune job's message
    assert swapper.pending is None and _refusals(metrics, "sha256") == 1
    swapper.close()


@pytest.mark.parametrize("damage", ["tamper", "delete"])
def test_a_bundle_that_fails_verification_is_refused_and_not_retried(registry, other_bundle, damage):
    from export.registry import Registry

    metrics = WorkerMetrics()
    swapper = _swapper(registry, metrics)
    serving = swapper.load_current()
    reg = Registry(registry)
    second = reg.publish(other_bundle)
    reg.promote(second)
    items = registry / second / "items.npy"  # damaged after it was promoted
    if damage == "tamper":
        items.write_bytes(items.read_bytes()[:-4] + b"\x00\x00\x80\x7f")
    else:
        items.unlink()
    swapper.notice_update(_message(second, str(registry / second), _manifest_sha256(registry / second)))
    assert _ready(swapper) is None
    assert _refusals(metrics, "verification") == 1 and swapper.serving_version == serving.version
    swapper.notice_update(_message(second, str(registry / second), _manifest_sha256(registry / second)))
    assert swapper.pending is None  # refused versions are not verified again
    swapper.close()
