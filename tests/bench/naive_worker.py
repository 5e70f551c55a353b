"""BENCHMARK REFERENCE ONLY, never used by the product: the straightforward way to build the worker,
for `istream bench e2e --compare-naive` to measure the real worker against.

One Faust agent handles one event at a time: parse the JSON, read the user's state (JSON floats in
a RocksDB-backed Faust table), run the torch model for that single event (the torch comment
encoder for a comment), score every item, write the state back, and await a send of the vector
and of the recommendations. Same bundle (its torch checkpoint), same topics and record shapes as
the real worker, none of its batching.

Run like the worker: ``python tests/bench/naive_worker.py --registry R --data-dir D --web-port P``
with ``KAFKA_BOOTSTRAP_SERVERS``/``ISTREAM_*`` in the environment.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import faust
import torch

from export.registry import Registry
from models.checkpoint import load_checkpoint
from models.comment_encoder import CommentEncoder
from stream_app import topics
from stream_app.contracts import EVENT_TYPES
from stream_app.settings import Settings
from stream_app.worker.app import events_partitions

TOP_K = 10


def create_app(settings: Settings, registry: Path, data_dir: Path, web_port: int) -> faust.App:
    torch.set_num_threads(1)  # what models.train found fastest for these small ops on shared cores
    reg = Registry(registry)
    version = reg.current()
    bundle = reg.bundle_path(version)
    checkpoint = load_checkpoint(bundle / "checkpoint")
    model = checkpoint.model
    encoder = CommentEncoder.from_pretrained(model.config.encoder_path, model.config.encoder_max_length).eval()
    with torch.no_grad():
        item_vectors = model.item_vectors()
    row_of = checkpoint.item_index()
    partitions = events_partitions(settings)
    data_dir.mkdir(parents=True, exist_ok=True)
    session_s = settings.session_timeout_ms / 1000
    app = faust.App(
        f"{settings.topic_prefix}-naive",
        broker=f"kafka://{settings.bootstrap_servers}",
        store="rocksdb://",
        datadir=str(data_dir),
        topic_partitions=partitions,
        broker_session_timeout=session_s,
        broker_heartbeat_interval=session_s / 4,
        consumer_auto_offset_reset="earliest",
        web_port=web_port or 6066,
        autodiscover=False,
    )
    name = lambda kind: topics.topic_name(settings.topic_prefix, kind)  # noqa: E731
    events = app.topic(name(topics.EVENTS), key_serializer="raw", value_serializer="raw")
    vectors = app.topic(name(topics.VECTORS), key_serializer="raw", value_serializer="raw")
    recommendations = app.topic(name(topics.RECOMMENDATIONS), key_serializer="raw", value_serializer="raw")
    user_to_state = app.Table("user_to_state_json", partitions=partitions, key_type=str, value_type=str)

    @app.agent(events)
    async def update_user_interest_naively(stream: faust.StreamT) -> None:
        async for raw in stream:
            event = json.loads(raw)
            user = event["user_id"]
            saved = json.loads(user_to_state.get(user) or "null")
            state = torch.tensor([saved["state"]]) if saved else model.initial_state(1)
            row = row_of.get(event["item_id"])
            item = item_vectors[row : row + 1] if row is not None else torch.zeros(1, model.config.vector_dim)
            text = event.get("text")
            with torch.no_grad():
                comment = encoder.encode([text]) if text else torch.zeros(1, model.config.text_dim)
                new_state, interest, long_term, short_term = model.step(
                    state,
                    item,
                    torch.tensor([EVENT_TYPES.index(event["type"])]),
                    torch.as_tensor(comment, dtype=torch.float32),
                    torch.tensor([1.0 if text else 0.0]),
                    torch.tensor([float(event.get("rating", -1.0))]),
                    torch.tensor([(event["ts"] - saved["ts"]) / 1000.0 if saved else 0.0]),
                )
                scores = item_vectors @ interest[0]
            seen = [*(saved["seen"] if saved else [])[-99:], event["item_id"]]
            for item_id in seen:
                if item_id in row_of:
                    scores[row_of[item_id]] = float("-inf")
            top = torch.topk(scores, TOP_K)
            user_to_state[user] = json.dumps({"state": new_state[0].tolist(), "ts": event["ts"], "seen": seen})
            common = {"user_id": user, "event_id": event["event_id"], "ts": event["ts"], "model_version": version}
            vector = {
                **common,
                "vector": interest[0].tolist(),
                "long_term": long_term[0].tolist(),
                "short_term": short_term[0].tolist(),
            }
            items = [
                {"item_id": checkpoint.item_ids[r], "score": s}
                for r, s in zip(top.indices.tolist(), top.values.tolist(), strict=True)
            ]
            await vectors.send(key=user.encode(), value=json.dumps(vector).encode())
            await recommendations.send(key=user.encode(), value=json.dumps({**common, "items": items}).encode())

    return app


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--web-port", type=int, default=0)
    args = parser.parse_args(argv)
    app = create_app(Settings(), args.registry, args.data_dir, args.web_port)
    from faust.worker import Worker

    Worker(app, loglevel="info", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    main(sys.argv[1:])
