import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stream_app.broker import free_port, port_is_free
from stream_app.demo.live import TOP_K, score, split_held_back
from stream_app.demo.readme import SUMMARY_FILE, readme_figures, with_figures

README = Path(__file__).resolve().parents[3] / "README.md"


def _event(n: int, user: str, item: str) -> dict:
    return {"event_id": f"e{n}", "user_id": user, "item_id": item, "type": "click", "ts": n}


def _rec(event: dict, items: list[str]) -> dict:
    return {"user_id": event["user_id"], "event_id": event["event_id"], "items": [{"item_id": i} for i in items]}


def test_split_holds_back_each_users_newest_events_and_keeps_two_for_history():
    events = [_event(n, "a", f"i{n}") for n in range(6)] + [_event(10 + n, "b", f"i{n}") for n in range(3)]
    events.sort(key=lambda e: e["ts"])
    history, held = split_held_back(events, per_user=4)
    assert [e["event_id"] for e in held] == ["e2", "e3", "e4", "e5", "e12"]
    assert [e["event_id"] for e in history] == ["e0", "e1", "e10", "e11"]


def test_score_judges_each_event_on_the_recommendation_after_the_previous_one():
    truth = {
        "topics": ["t0", "t1", "t2", "t3"],
        "items": {"x": 0, "y": 0, "z": 1, "w": 3},
        "users": {"a": {"long_term_topics": [0], "current_burst": 1}},
    }
    held = [_event(1, "a", "x"), _event(2, "a", "y"), _event(3, "a", "x"), _event(4, "a", "w")]
    recs = [_rec(held[0], ["y", "z"]), _rec(held[1], ["z", "w"]), _rec(held[2], ["z", "w"]), _rec(held[3], ["z"])]
    s = score(held, recs, truth)
    # y after x: hit; x after y: miss (a return to a touched item); w after x: hit
    assert (s.judged, s.hits, s.judged_new, s.hits_new) == (3, 2, 2, 2)
    assert s.recommendations == s.held_back == 4
    # 5 of the 7 recommended items are on topics 0 or 1; chance = 2 planted topics of 4
    assert s.planted_share == pytest.approx(5 / 7)
    assert s.chance_share == pytest.approx(0.5)
    assert s.n_items == 4 and TOP_K == 10


def test_readme_figures_are_replaced_at_the_blocks_indent_and_read_back():
    text = (
        "intro\n   <!-- demo-figures:begin -->\n   ```\n   old 1\n   old 2\n   ```\n   <!-- demo-figures:end -->\nend\n"
    )
    new = with_figures(text, ["live: 1", "HR: 0.5"])
    assert new == text.replace("   old 1\n   old 2", "   live: 1\n   HR: 0.5")
    assert readme_figures(new) == ["live: 1", "HR: 0.5"]
    with pytest.raises(ValueError, match="demo-figures"):
        readme_figures("no block")


@pytest.mark.integration
def test_demo_runs_the_whole_spine_and_its_live_recommendations_beat_chance(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ISTREAM_", "KAFKA_"))}
    result = subprocess.run(
        [sys.executable, "-m", "stream_app.demo", "--dir", tmp_path],
        env={**env, "ISTREAM_BROKER_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert f"Tansu broker (memory storage) on 127.0.0.1:{port}" in out
    commands = ("topics create", "generate", "train", "export", "models publish", "models promote", "bootstrap")
    for command in (*commands, "worker"):
        assert f"istream {command}" in out, command
    assert "held back: 300 events (last 6 of 50 users)" in out
    assert "states: 50 written" in out and "events: 1,700 valid, 1,700 applied" in out
    # before any live event the worker answers every user from its bootstrapped state, over its query API
    assert "warm start: 50 of 50 users answered from their bootstrapped state before any live event" in out
    first = re.search(r"^first live event .*: [\d.]+ \(\d+ of (\d+)\) from the bootstrapped states, ", out, re.M)
    assert first is not None and int(first[1]) > 10, out

    live = re.search(r"^live: (\d+) recommendations for (\d+) held-back events$", out, re.M)
    assert live is not None, out
    assert int(live[1]) == int(live[2]) == 300
    hr = re.search(r"^live HR@10: ([\d.]+) \(\d+ of (\d+)\) on events of items .* random ([\d.]+)$", out, re.M)
    assert hr is not None, out
    assert int(hr[2]) > 50 and float(hr[1]) > 2 * float(hr[3])
    share = re.search(r"^planted-topic share of the recommended items: ([\d.]+) \(chance ([\d.]+)\)$", out, re.M)
    assert share is not None, out
    assert float(share[1]) > 2 * float(share[2])
    # README's example figures are this run's (same defaults as `make run`), written by `make readme-figures`
    figures = (tmp_path / SUMMARY_FILE).read_text().splitlines()
    assert figures == [live[0], hr[0], share[0]]
    assert readme_figures(README.read_text()) == figures, "README's `make run` figures are stale: make readme-figures"

    assert "worker stopped, exit code 0" in out
    assert (tmp_path / "registry" / "CURRENT").is_file()
    assert "serving model: version=" in (tmp_path / "worker.log").read_text()
    assert "broker stopped" in out
    assert port_is_free("127.0.0.1", port)
