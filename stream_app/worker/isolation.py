"""A batch that fails for a reason other than its records: find the record, dead-letter it, go on.

``process_batch`` turns every bad record into a dead letter itself, so an exception out of it is a bug
or a resource running out, met on some record. Exiting would replay the same batch on restart and
fail again: one record would stop the worker for good. So the batch is bisected: each half is
processed again (users' states carried from half to half), a half that fails is split again, and a
single record that fails alone is dead-lettered with reason ``error`` and the exception.

The worker exits only on faults of its environment, ``ENVIRONMENT_FAULTS`` raised while a batch is
computed (the local store or the disk failing: ``OSError``, rocksdict's ``DbClosedError``; memory
running out: ``MemoryError``), and on any failure to write a batch (outputs or states not
acknowledged by Kafka, the local store): nothing of that batch is committed, and a restarted
worker replays it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from rocksdict import DbClosedError

from stream_app.worker.decode import RawRecord, dead_letter
from stream_app.worker.pipeline import BatchResult, PipelineConfig, Serving, dead_letter_output, process_batch
from stream_app.worker.trending import Trending
from stream_app.worker.trial import Challenger

log = logging.getLogger(__name__)

ENVIRONMENT_FAULTS: tuple[type[BaseException], ...] = (OSError, MemoryError, DbClosedError)


def isolate(
    records: Sequence[RawRecord],
    failure: Exception,
    load_state: Callable[[str, int], bytes | None],
    serving: Serving,
    trending: Trending,
    config: PipelineConfig,
    now_ms: int,
    challenger: Challenger | None = None,
) -> BatchResult:
    """The result of ``records``, whose whole batch raised ``failure``: every record processed but those
    that fail alone, which are dead-lettered. ``load_state`` must read what the previous batch wrote.

    A failed half may already have counted its items in ``trending`` (a popularity estimate); the
    users' states never see a failed half."""
    merged = BatchResult()
    written: dict[str, bytes] = {}  # user -> state after an earlier half

    def load(user_id: str, partition: int) -> bytes | None:
        value = written.get(user_id)
        return load_state(user_id, partition) if value is None else value

    def run(part: Sequence[RawRecord], error: Exception | None) -> None:
        if error is None:
            try:
                result = process_batch(part, load, serving, trending, config, None, now_ms, challenger)
            except ENVIRONMENT_FAULTS:
                raise
            except Exception as exc:
                error = exc
            else:
                _merge(merged, result)
                written.update((w.user_id, w.value) for w in result.writes)
                return
        if len(part) > 1:
            middle = len(part) // 2
            run(part[:middle], None)
            run(part[middle:], None)
            return
        (record,) = part
        log.error("%s[%d]@%d: dead-lettered, its batch failed on it: %r", record.topic, record.partition,
                  record.offset, error, exc_info=error)  # fmt: skip
        merged.outputs.append(dead_letter_output(dead_letter(record, "error", f"{type(error).__name__}: {error}")))
        merged.dead_letter_reasons["error"] += 1

    run(records, failure)
    merged.counts["in"] = len(records)
    return merged


def _merge(into: BatchResult, part: BatchResult) -> None:
    into.outputs += part.outputs
    into.writes += part.writes
    users = {user_id for user_id, _, _ in part.states}
    into.states = [s for s in into.states if s[0] not in users] + part.states
    into.counts.update(part.counts)
    into.dead_letter_reasons.update(part.dead_letter_reasons)
    if part.judgements is not None:
        if into.judgements is None:
            into.judgements = part.judgements
        else:
            into.judgements.add(part.judgements)
    for stage, seconds in part.timings.items():
        into.timings[stage] = into.timings.get(stage, 0.0) + seconds
