"""`istream convert` and `istream generate` through the real click command tree (in-process)."""

import json

import pytest
from click.testing import CliRunner

from models.datasets import read_jsonl
from stream_app.cli import cli
from tests.models.datasets.checks import assert_valid_stream


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_convert_movielens(movielens_files, tmp_path):
    out_e, out_i = tmp_path / "out" / "events.jsonl", tmp_path / "out" / "items.jsonl"
    f = movielens_files
    result = _run("convert", "movielens", "--ratings", f["ratings"], "--tags", f["tags"], "--movies", f["movies"],
                  "--out-events", out_e, "--out-items", out_i)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "wrote 7 events (comment: 2, rating: 5) from 2 users" in result.output
    assert "wrote 3 items" in result.output
    assert_valid_stream(list(read_jsonl(out_e)), list(read_jsonl(out_i)))


def test_convert_amazon(amazon_file, tmp_path):
    out_e, out_i = tmp_path / "events.jsonl", tmp_path / "items.jsonl"
    result = _run("convert", "amazon", "--reviews", amazon_file, "--out-events", out_e, "--out-items", out_i)
    assert result.exit_code == 0, result.output
    assert "wrote 4 events (comment: 3, rating: 1) from 3 users" in result.output
    assert [i["item_id"] for i in read_jsonl(out_i)] == ["A1", "A2"]


def test_generate_writes_events_items_and_truth(tmp_path):
    out_e, out_i, out_t = tmp_path / "e.jsonl", tmp_path / "i.jsonl", tmp_path / "t.json"
    args = ["generate", "--users", 20, "--items", 40, "--events", 800, "--seed", 5, "--topics", 8,
            "--out-events", out_e, "--out-items", out_i]  # fmt: skip
    result = _run(*args, "--out-truth", out_t)
    assert result.exit_code == 0, result.output
    assert "wrote 800 events" in result.output and "wrote truth for 20 users" in result.output
    truth = json.loads(out_t.read_text())
    assert truth["seed"] == 5 and len(truth["topics"]) == 8 and len(truth["users"]) == 20
    events = list(read_jsonl(out_e))
    assert_valid_stream(events, list(read_jsonl(out_i)))
    first = out_e.read_bytes()
    assert _run(*args).exit_code == 0 and out_e.read_bytes() == first


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["convert", "movielens", "--ratings", "{tmp}/nope.csv", "--movies", "{tmp}/nope.csv",
          "--out-events", "{tmp}/e", "--out-items", "{tmp}/i"], "does not exist"),
        (["convert", "amazon", "--reviews", "{tmp}/nope.json.gz", "--out-events", "{tmp}/e", "--out-items", "{tmp}/i"],
         "does not exist"),
        (["convert", "amazon", "--reviews", "{tmp}/bad.json", "--out-events", "{tmp}/e", "--out-items", "{tmp}/i"],
         "bad.json:1: not valid JSON"),
        (["convert", "movielens", "--ratings", "{tmp}/bad.json", "--movies", "{tmp}/bad.json",
          "--out-events", "{tmp}/e", "--out-items", "{tmp}/i"], "missing column(s) userId, movieId"),
        (["generate", "--items", "5", "--out-events", "{tmp}/e", "--out-items", "{tmp}/i"], "items >= topics"),
        (["generate", "--topics", "40", "--out-events", "{tmp}/e", "--out-items", "{tmp}/i"], "--topics"),
    ],
)  # fmt: skip
def test_user_mistakes_exit_non_zero_with_a_message(tmp_path, args, message):
    (tmp_path / "bad.json").write_text("{not json\n")
    result = _run(*(a.format(tmp=tmp_path) for a in args))
    assert result.exit_code != 0
    assert message in result.output
    assert isinstance(result.exception, SystemExit)  # a clean click exit, not an escaped exception


def test_convert_movielens_100k(tmp_path):
    (tmp_path / "u.genre").write_text("unknown|0\nDrama|1\n", encoding="latin-1")
    (tmp_path / "u.item").write_text("7|Heat (1995)|||x|0|1\n", encoding="latin-1")
    (tmp_path / "u.data").write_text("1\t7\t4\t1000\n2\t7\t2\t900\n", encoding="utf-8")
    out_e, out_i = tmp_path / "events.jsonl", tmp_path / "items.jsonl"
    result = _run("convert", "movielens-100k", "--ratings", tmp_path / "u.data", "--movies", tmp_path / "u.item",
                  "--out-events", out_e, "--out-items", out_i)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "wrote 2 events (rating: 2) from 2 users" in result.output
    assert list(read_jsonl(out_i)) == [{"item_id": "7", "text": "Heat (1995). Genres: Drama"}]
    missing = _run("convert", "movielens-100k", "--ratings", tmp_path / "u.data", "--movies", tmp_path / "u.item",
                   "--genres", tmp_path / "nope", "--out-events", out_e, "--out-items", out_i)  # fmt: skip
    assert missing.exit_code == 2 and "does not exist" in missing.output
