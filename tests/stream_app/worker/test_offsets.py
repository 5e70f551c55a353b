from faust.types import TP

from stream_app.worker.offsets import OffsetTracker


def test_in_order_offsets_and_redeliveries_skip_nothing():
    offsets = OffsetTracker()
    assert [len(offsets.observe("events", 0, o)) for o in (5, 6, 7)] == [0, 0, 0]
    # a redelivery after a restart or rebalance starts below the next expected offset
    assert [len(offsets.observe("events", 0, o)) for o in (6, 7, 8)] == [0, 0, 0]
    assert offsets.observe("events", 0, 9) == range(0)


def test_a_jump_returns_exactly_the_offsets_never_delivered():
    offsets = OffsetTracker()
    for o in range(100, 208):
        offsets.observe("events", 1, o)
    assert offsets.observe("events", 1, 232) == range(208, 232)
    assert offsets.observe("events", 1, 233) == range(0)
    assert offsets.observe("events", 1, 235) == range(234, 235)


def test_partitions_and_topics_are_tracked_apart():
    offsets = OffsetTracker()
    offsets.observe("events", 0, 10)
    offsets.observe("events", 1, 500)
    offsets.observe("other", 0, 900)
    assert offsets.observe("events", 0, 11) == range(0)
    assert offsets.observe("events", 1, 501) == range(0)
    assert offsets.observe("other", 0, 902) == range(901, 902)


def test_a_revoked_partition_may_come_back_further_on():
    offsets = OffsetTracker()
    assert not offsets.knows("events", 3)
    offsets.observe("events", 3, 40)
    assert offsets.knows("events", 3)
    offsets.forget({TP("events", 3)})
    assert not offsets.knows("events", 3)  # its next record is logged as where consuming resumed
    # another worker owned it meanwhile and processed 41..99
    assert offsets.observe("events", 3, 100) == range(0)
    assert offsets.observe("events", 3, 102) == range(101, 102)
