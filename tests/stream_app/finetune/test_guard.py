"""The guard's bounds (their error rate at the margin, simulated) and its decisions on a real registry of
real bundles, fed online-metrics records as the workers write them."""

from __future__ import annotations

import time

import numpy as np
import pytest

from stream_app.contracts import OnlineMetrics
from stream_app.contracts.records import JudgedCounts, PairedCounts
from stream_app.finetune.guard import (
    ENDED,
    KEPT,
    PROMOTED,
    REJECTED,
    ROLLED_BACK,
    WATCHING,
    Guard,
    GuardConfig,
    LiveFigures,
    paired_bounds,
    read_records,
    unpaired_bounds,
)
from tests.stream_app.worker.conftest import other_bundle  # noqa: F401 - a second model version

CONFIG = GuardConfig(judged_events=400, margin=0.02, confidence=0.95)


def test_the_bounds_promote_a_model_worse_by_the_margin_at_most_as_often_as_the_confidence_allows():
    rng = np.random.default_rng(5)
    # paired: the newer model hits 2 points less often (exactly the margin), 20 % of events discordant
    cells = rng.multinomial(400, [0.09, 0.11, 0.80], size=4000)  # newer only, older only, same
    promoted = np.mean([paired_bounds(400, int(b), int(c), 0.95)[0] >= -0.02 for b, c, _ in cells])
    # canary: two arms of 400 served lists, HR 0.28 against 0.30
    hits = rng.binomial(400, [0.28, 0.30], size=(4000, 2))
    promoted_canary = np.mean([unpaired_bounds(400, int(a), 400, int(b), 0.95)[0] >= -0.02 for a, b in hits])
    assert promoted <= 0.06 and promoted_canary <= 0.06
    # and they do promote a model that is as good, given the events (the power the judged events buy)
    same = rng.multinomial(8000, [0.1, 0.1, 0.8], size=500)
    assert np.mean([paired_bounds(8000, int(b), int(c), 0.95)[0] >= -0.02 for b, c, _ in same]) > 0.95
    low, high = paired_bounds(1000, 0, 0, 0.95)  # no discordant pair: a bound, not a zero-width interval
    assert low < 0 < high


def _record(champion: str, challenger: str, newer_hits: float, older_hits: float, n: int, mode: str = "shadow",
            champion_is_newer: bool = False) -> OnlineMetrics:  # fmt: skip
    """A window of ``n`` events judging both models, as a worker writes it (hits given as rates)."""
    now = int(time.time() * 1000) + 1000
    ch_rate, cl_rate = (newer_hits, older_hits) if champion_is_newer else (older_hits, newer_hits)
    ch_hits, cl_hits = round(ch_rate * n), round(cl_rate * n)
    both = min(ch_hits, cl_hits)

    def judged(version: str, exposure: str, hits: int, count: int) -> JudgedCounts:
        return JudgedCounts(model_version=version, exposure=exposure, cohort="6-10", judged=count, hits=hits,
                            reciprocal_rank=0.0, ndcg=0.0, new_items=count, new_item_hits=hits)  # fmt: skip

    if mode == "canary":  # each arm serves half the users
        rows = [judged(champion, "served", ch_hits // 2, n // 2), judged(challenger, "served", cl_hits // 2, n // 2)]
    else:
        rows = [judged(champion, "served", ch_hits, n), judged(challenger, "shadow", cl_hits, n)]
    pair = PairedCounts(champion=champion, challenger=challenger, judged=n, both_hit=both, champion_only=ch_hits - both,
                        challenger_only=cl_hits - both, ndcg_diff=0.0, ndcg_diff_sq=0.0)  # fmt: skip
    return OnlineMetrics(worker="w", window_start=now, window_end=now + 1, k=10, champion=champion,
                         challenger=challenger, trial_mode=mode, canary_share=0.5 if mode == "canary" else 0.0,
                         judged=rows, paired=[pair])  # fmt: skip


@pytest.fixture
def registry(tmp_path, tiny_bundle, other_bundle):  # noqa: F811 - the fixture imported above
    from export.registry import Registry

    reg = Registry(tmp_path / "registry")
    a = reg.publish(tiny_bundle)
    reg.promote(a)
    return reg, a, reg.publish(other_bundle)


def test_the_guard_promotes_watches_rolls_back_rejects_and_keeps_on_live_figures(registry):
    reg, a, b = registry
    guard = Guard(reg, CONFIG)
    assert guard.step(LiveFigures()) is None  # one version, nothing on trial
    reg.open_trial(b)
    assert guard.step(LiveFigures([_record(a, b, 0.40, 0.30, 399)])) is None  # not enough events yet
    promoted = guard.step(LiveFigures([_record(a, b, 0.40, 0.30, 200), _record(a, b, 0.40, 0.30, 200)]))
    assert promoted.action == PROMOTED and reg.current() == b and promoted.figures["n"] == 400
    assert promoted.figures["hr_newer"] == pytest.approx(0.40) and promoted.figures["lower"] > -0.02
    watch = reg.trial()
    assert (watch.version, watch.champion, watch.purpose, watch.mode) == (a, b, "watch", "shadow")
    # the promoted model does worse live than the one it replaced: rolled back
    back = guard.step(LiveFigures([_record(b, a, 0.20, 0.30, 500, champion_is_newer=True)]))
    assert back.action == ROLLED_BACK and (back.version, back.against) == (b, a)
    assert reg.current() == a and reg.trial() is None and back.figures["upper"] < 0
    assert guard.step(LiveFigures()) is None  # decided: a is not watched again
    # a challenger worse than the margin is rejected; CURRENT stays
    reg.open_trial(b, "canary", 0.5)
    rejected = guard.step(LiveFigures([_record(a, b, 0.25, 0.30, 1000, mode="canary")]))
    assert rejected.action == REJECTED and rejected.figures["test"] == "unpaired" and reg.current() == a
    assert reg.trial() is None
    # a promotion by hand is watched, and kept when it holds up
    reg.promote(b)
    watching = guard.step(LiveFigures())
    assert watching.action == WATCHING and reg.trial().version == a and reg.trial().purpose == "watch"
    kept = guard.step(LiveFigures([_record(b, a, 0.31, 0.30, 2000, champion_is_newer=True)]))
    assert kept.action == KEPT and reg.current() == b and reg.trial() is None
    # a trial opened beside a champion that is no longer CURRENT is ended
    reg.open_trial(a)
    reg.rollback()
    assert guard.step(LiveFigures()).action == ENDED and reg.trial() is None
    assert [r.action for r in read_records(reg.root)] == [
        PROMOTED, ROLLED_BACK, REJECTED, WATCHING, KEPT, ENDED
    ]  # fmt: skip
