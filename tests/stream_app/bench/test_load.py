import numpy as np
import pytest

from stream_app.bench.load import Timings


def _timings(arrived: list[float]) -> Timings:
    n = len(arrived)
    return Timings(sent_at=np.zeros(n), arrived_at=np.array(arrived), versions=[""] * n)


def test_the_sustained_rate_leaves_out_the_first_and_last_tenth_of_the_answers():
    # 10 answers per second for 10 s, then a straggler 100 s later that the window leaves out
    arrived = [*np.arange(1, 101) / 10.0, 200.0]
    assert _timings(arrived).sustained_rate() == pytest.approx(10.0, rel=0.02)


def test_answers_that_all_arrived_in_one_fetch_give_the_whole_runs_rate_not_nan():
    timings = _timings([2.0] * 600)  # a short run a fast worker answered in one batch
    assert timings.sustained_rate() == timings.overall_rate() == pytest.approx(300.0)
    assert _timings([1.0, 2.0, float("nan")]).sustained_rate() == pytest.approx(1.0)
