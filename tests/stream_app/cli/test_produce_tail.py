import csv
import gzip
import itertools
import json
from pathlib import Path

import pytest

from stream_app.client import RecordConsumer
from stream_app.contracts import decode_event

pytestmark = pytest.mark.integration

MOVIELENS = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "movielens-latest-small"
SAMPLE_ROWS = 2000


def event(i: int, **changes) -> dict:
    return {"event_id": f"e{i}", "user_id": f"u{i % 3}", "item_id": f"i{i}", "type": "view", "ts": 1000 + i, **changes}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def read_back(settings, kind: str, limit: int, timeout: float = 1.5) -> list:
    """Every message of the topic, up to ``limit``, stopping after ``timeout`` idle seconds."""
    with RecordConsumer(settings, kind, from_beginning=True) as consumer:
        return list(consumer.messages(max_records=limit, timeout=timeout))


@pytest.mark.skipif(not MOVIELENS.is_dir(), reason=f"MovieLens sample not found at {MOVIELENS} (../shared/data)")
def test_converted_movielens_sample_is_read_back_in_full(settings, topics, group_id, istream, tmp_path):
    from models.datasets import read_movielens, write_jsonl

    ratings = tmp_path / "ratings.csv"
    with open(MOVIELENS / "ratings.csv", newline="") as src, open(ratings, "w", newline="") as dst:
        csv.writer(dst).writerows(itertools.islice(csv.reader(src), SAMPLE_ROWS + 1))
    dataset = read_movielens(ratings, MOVIELENS / "movies.csv", MOVIELENS / "tags.csv")
    events_file, items_file = tmp_path / "events.jsonl", tmp_path / "items.jsonl"
    write_jsonl(events_file, dataset.events)
    write_jsonl(items_file, dataset.items)

    result = istream("produce", events_file, "--items", items_file)
    assert result.returncode == 0, result.stderr
    assert f"produced {len(dataset.events)} events" in result.stdout

    with RecordConsumer(settings, "events", group_id=group_id, from_beginning=True) as consumer:
        messages = list(consumer.messages(max_records=len(dataset.events) + 1, timeout=2))
    received = {decode_event(m.value()).event_id: (m.key().decode(), decode_event(m.value())) for m in messages}
    assert len(messages) == len(dataset.events) >= SAMPLE_ROWS
    assert received == {e["event_id"]: (e["user_id"], decode_event(json.dumps(e))) for e in dataset.events}
    assert len(read_back(settings, "items", len(dataset.items) + 1)) == len(dataset.items)


def test_a_broken_line_is_named_and_nothing_is_produced(settings, topics, istream, tmp_path):
    path = write_lines(
        tmp_path / "events.jsonl",
        [
            json.dumps(event(1)),
            '{"event_id": "e2", "user_id": ',
            json.dumps(event(3)),
            json.dumps(event(4, ts=-5)),
            '{"event_id": "e5", "extra": ' + "[" * 1000 + "]" * 1000 + "}",
        ],
    )
    result = istream("produce", path)
    assert result.returncode != 0
    assert f"{path}:2: event: not valid JSON" in result.stderr
    assert f"{path}:4: event:" in result.stderr and ">= 0" in result.stderr
    assert f"{path}:5: event: JSON nested deeper than 32 levels" in result.stderr  # a RecursionError before
    assert "3 invalid line(s) (first: line 2); nothing was produced" in result.stderr
    assert "Traceback" not in result.stderr
    assert read_back(settings, "events", 1) == []


def test_skip_invalid_produces_the_rest_and_says_how_many_were_skipped(settings, topics, istream, tmp_path):
    path = write_lines(
        tmp_path / "events.jsonl",
        [json.dumps(event(1)), "not json", json.dumps(event(3, type="comment")), "", json.dumps(event(5))],
    )
    result = istream("produce", path, "--skip-invalid")
    assert result.returncode == 0, result.stderr
    assert "skipping 2 invalid line(s)" in result.stderr
    assert f"produced 2 events to {topics['events']}" in result.stdout
    assert sorted(decode_event(m.value()).event_id for m in read_back(settings, "events", 3)) == ["e1", "e5"]


def test_an_invalid_items_file_stops_everything(settings, topics, istream, tmp_path):
    events_file = write_lines(tmp_path / "events.jsonl", [json.dumps(event(1))])
    items_file = write_lines(tmp_path / "items.jsonl", ['{"item_id": "i1"}', '{"text": "no id"}'])
    result = istream("produce", events_file, "--items", items_file)
    assert result.returncode != 0 and f"{items_file}:2: item:" in result.stderr
    assert read_back(settings, "events", 1) == []


def test_gzipped_files_are_read(settings, topics, istream, tmp_path):
    path = tmp_path / "events.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps(event(1)) + "\n" + json.dumps(event(2)) + "\n")
    result = istream("produce", path)
    assert result.returncode == 0, result.stderr
    assert len(read_back(settings, "events", 3)) == 2


def test_produce_to_a_named_topic_at_a_rate(settings, topics, istream, tmp_path):
    path = write_lines(tmp_path / "events.jsonl", [json.dumps(event(i)) for i in range(5)])
    result = istream("produce", path, "--topic", topics["deadletter"], "--rate", "100")
    assert result.returncode == 0, result.stderr
    assert len(read_back(settings, "deadletter", 6)) == 5


def test_tail_prints_one_json_object_per_line(settings, topics, istream, tmp_path):
    produced = [event(i) for i in range(6)] + [event(6, type="comment", text="multi\nline ✓")]
    path = write_lines(tmp_path / "events.jsonl", [json.dumps(e) for e in produced])
    assert istream("produce", path).returncode == 0

    by_kind = istream("tail", "events", "--from-beginning", "--timeout", "1")
    assert by_kind.returncode == 0, by_kind.stderr
    lines = by_kind.stdout.splitlines()
    assert sorted((json.loads(line) for line in lines), key=lambda e: e["ts"]) == produced

    by_name = istream("tail", topics["events"], "--from-beginning", "--max", "2")
    assert by_name.returncode == 0 and len(by_name.stdout.splitlines()) == 2


def test_tail_of_a_missing_topic_fails_clearly(istream):
    result = istream("tail", "no-such-topic", "--max", "1")
    assert result.returncode != 0
    assert "topic no-such-topic does not exist" in result.stderr and "Traceback" not in result.stderr
