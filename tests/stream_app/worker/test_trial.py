"""TrialWatcher on a real registry with real bundles: a trial is verified off the hot path and handed over
between batches; a mode change, an end, a trial naming CURRENT and a held model need no loading."""

from __future__ import annotations

import time

from stream_app.worker.metrics import WorkerMetrics
from stream_app.worker.trial import TrialChange, TrialWatcher


def _next_change(watcher: TrialWatcher, champion: str, text_dim: int, timeout: float = 30.0) -> TrialChange:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        change = watcher.poll(champion, text_dim)
        if change is not None:
            return change
        time.sleep(0.05)
    raise AssertionError("no change handed over")


def test_a_trial_is_loaded_handed_over_changed_and_ended(registry, other_bundle, runtime):
    from export.registry import Registry
    from export.runtime import load_runtime

    reg = Registry(registry)
    champion = reg.current()
    loads: list[str] = []
    held: dict[str, object] = {}

    def load(bundle):
        loads.append(bundle.name)
        return load_runtime(bundle)

    metrics = WorkerMetrics()
    watcher = TrialWatcher(reg, load, held.get, metrics, poll_s=0.0)
    text_dim = runtime.text_dim
    assert watcher.poll(champion, text_dim) is None  # no trial
    other = reg.publish(other_bundle)
    reg.open_trial(other)
    change = _next_change(watcher, champion, text_dim)
    assert (change.runtime.version, change.mode, change.share) == (other, "shadow", 0.0) and loads == [other]
    held[other] = change.runtime
    assert watcher.poll(champion, text_dim) is None  # nothing changed
    reg.open_trial(other, "canary", 0.5)
    change = _next_change(watcher, champion, text_dim)
    assert (change.runtime is held[other], change.mode, change.share) == (True, "canary", 0.5) and loads == [other]
    assert _next_change(watcher, other, text_dim) == TrialChange(None)  # CURRENT is the trial's version now: no trial
    reg.close_trial()
    assert watcher.poll(champion, text_dim) is None  # nothing ran beside champion since
    reg.open_trial(other)
    assert _next_change(watcher, champion, text_dim).runtime is held[other] and loads == [other]  # held: not reloaded
    reg.close_trial()
    assert _next_change(watcher, champion, text_dim) == TrialChange(None)
    # a challenger with other comment embeddings than the champion's is refused, once
    reg.open_trial(other)
    assert watcher.poll(champion, text_dim + 1) is None and other in watcher.refused
    assert metrics.registry.get_sample_value("istream_model_refusals_total", {"reason": "trial"}) == 1.0
    watcher.close()
