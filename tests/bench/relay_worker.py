"""BENCHMARK REFERENCE ONLY, never used by the product: the most one worker process gets through
Faust and the broker on this machine when it does no work, for `istream bench e2e --compare-relay`.

The worker's own Faust app (``stream_app.worker.app.worker_app``: its event loop, consumer settings and
micro-batches of ``ISTREAM_WORKER_BATCH_SIZE`` events within ``ISTREAM_WORKER_BATCH_MS``), and an
agent that sends every event record back out unchanged as one record of the recommendations topic
(the benchmark reads its ``event_id``) through the worker's librdkafka output producer, flushed
once per batch.
No decoding, model, state or vectors: what is left is Faust's consumer path, one output per event
and the broker, the part of the worker's cost that no change inside the pipeline can remove.

Run like the worker: ``python tests/bench/relay_worker.py --registry R --data-dir D --web-port P``
with ``KAFKA_BOOTSTRAP_SERVERS``/``ISTREAM_*`` in the environment (the registry is not read).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import faust


def create_app(settings, data_dir: Path, web_port: int) -> faust.App:
    from stream_app import topics
    from stream_app.worker.app import events_topic, worker_app
    from stream_app.worker.outputs import OutputProducer

    settings = settings.model_copy(update={"worker_data_dir": data_dir, "worker_web_port": web_port})
    app = worker_app(settings, f"{settings.topic_prefix}-relay")
    recommendations = topics.topic_name(settings.topic_prefix, topics.RECOMMENDATIONS)

    @app.agent(events_topic(app, settings))
    async def relay(stream: faust.StreamT) -> None:
        producer = OutputProducer(settings.kafka_config(), {})
        try:
            async for batch in stream.take_events(settings.worker_batch_size, within=settings.worker_batch_ms / 1000):
                for event in batch:
                    producer.send(recommendations, event.message.key, event.message.value)
                await producer.flush()
        finally:
            producer.close()

    return app


def main(argv: list[str]) -> None:
    from faust.worker import Worker

    from stream_app.settings import Settings
    from stream_app.worker.app import use_event_loop

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--web-port", type=int, default=0)
    args = parser.parse_args(argv)
    settings = Settings()
    use_event_loop(settings)  # the worker's loop too
    app = create_app(settings, args.data_dir, args.web_port)
    Worker(app, loglevel="info", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    main(sys.argv[1:])
