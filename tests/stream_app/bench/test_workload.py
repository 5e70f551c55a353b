from collections import defaultdict

import msgspec
import numpy as np

from stream_app.bench.workload import build_workload, interleave
from stream_app.contracts import decode_event


def test_interleave_keeps_each_users_order_and_spreads_users_over_the_stream():
    events = [("a", f"i{n}", n) for n in range(100)] + [("b", f"j{n}", n) for n in range(100)]
    mixed = interleave(events, np.random.default_rng(0))
    assert sorted(mixed) == sorted(events)
    for user in ("a", "b"):
        assert [ts for u, _, ts in mixed if u == user] == list(range(100))
    # in time order the first 100 events are all user a; interleaved, every tenth of the stream has both
    for tenth in range(10):
        assert {u for u, _, _ in mixed[tenth * 20 : tenth * 20 + 20]} == {"a", "b"}


def test_workload_events_are_valid_monotonic_per_user_and_carry_the_asked_comment_share(tmp_path):
    # an empty data folder: the generated stream and generated comments (what CI has)
    load = build_workload(120_000, 0.1, seed=3, tag="t1", data_dir=tmp_path)
    assert len(load) == 120_000 and len(set(load.event_ids)) == 120_000
    events = [decode_event(v) for v in load.values]
    assert all(k == e.user_id.encode() for k, e in zip(load.keys, events, strict=True))
    comments = [e for e in events if e.type == "comment"]
    assert len(comments) == load.comments and abs(load.comments / len(load) - 0.1) < 0.005
    assert all(e.text for e in comments) and {e.type for e in events} == {"click", "comment"}
    last: dict[str, int] = defaultdict(lambda: -1)
    for e in events:
        assert e.ts >= last[e.user_id]
        last[e.user_id] = e.ts
    # past the data's 100,000 events, the stream goes round again with new user ids
    assert any("~2" in e.user_id for e in events) and load.users > len({e.user_id for e in events[:100_000]})
    assert msgspec.json.decode(load.values[0])["event_id"] == "t1-0"
