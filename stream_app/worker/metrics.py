"""Prometheus metrics of the worker (served at /metrics on the worker's web port)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from stream_app.worker.online_eval import Judgements

STAGES = ("decode", "load", "dedupe", "encode", "step", "rank", "challenger", "judge", "serialize", "emit", "store")


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_in = Counter("istream_events_in", "Event records consumed.", registry=r)
        self.events_applied = Counter("istream_events_applied", "Events applied to a user state.", registry=r)
        self.records_out = Counter("istream_records_out", "Records emitted, by topic kind.", ["kind"], registry=r)
        self.dead_letters = Counter("istream_dead_letters", "Records sent to dead-letter.", ["reason"], registry=r)
        self.duplicates = Counter("istream_duplicates_dropped", "Redelivered or repeated events dropped.", registry=r)
        self.misrouted = Counter(
            "istream_misrouted",
            "Events and tombstones off their user's partition, by action (forward, deadletter).",
            ["action"],
            registry=r,
        )
        self.forgets = Counter("istream_users_forgotten", "User states deleted on request.", registry=r)
        self.rebuilds = Counter("istream_states_rebuilt", "States rebuilt from their window after a swap.", registry=r)
        self.skipped_offsets = Counter(
            "istream_skipped_offsets", "Events-topic offsets the consumer never delivered.", ["partition"], registry=r
        )
        self.state_errors = Counter("istream_state_decode_errors", "Unreadable stored states.", registry=r)
        self.state_reads = Counter(
            "istream_state_reads", "User states read, by source (cache: kept decoded).", ["source"], registry=r
        )
        self.batch_size = Histogram(
            "istream_batch_size", "Events per micro-batch.", buckets=(1, 10, 50, 100, 250, 500, 1000, 2000), registry=r
        )
        self.stage_seconds = Histogram(
            "istream_stage_seconds",
            "Time per micro-batch stage.",
            ["stage"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.produce_to_emit = Histogram(
            "istream_produce_to_emit_seconds",
            "From the event record's timestamp to its outputs being acknowledged.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.consumer_lag = Gauge(
            "istream_consumer_lag", "Records behind the end, by partition.", ["partition"], registry=r
        )
        self.model = Info("istream_model", "Serving model version and ONNX Runtime provider.", registry=r)
        self.trial = Info(
            "istream_trial", "The model run beside the serving one: version, mode (shadow, canary, none), share.",
            registry=r,
        )  # fmt: skip
        self.swaps = Counter("istream_model_swaps", "Model versions swapped in.", registry=r)
        self.swap_refusals = Counter("istream_model_refusals", "Model versions refused.", ["reason"], registry=r)
        self.catalog_items = Gauge("istream_catalog_items", "Recommendable items in the index.", registry=r)
        self.ranking_graph_items = Gauge(
            "istream_ranking_graph_items",
            "Items in the approximate search's graph (0: the catalog is ranked exactly, ISTREAM_ANN_MIN_ITEMS).",
            registry=r,
        )
        self.ranking_audit = Counter(
            "istream_ranking_audit_items",
            "Items of the exact top-K of the queries the approximate search audits (ISTREAM_ANN_AUDIT_EVERY), by "
            "whether it found them: found / (found + missed) is its recall@K on the serving model's queries.",
            ["result"],
            registry=r,
        )
        self.states_expired = Counter(
            "istream_states_expired", "User states deleted after ISTREAM_STATE_TTL_S without events.", registry=r
        )
        self.queries = Counter(
            "istream_queries",
            "Query API requests, by endpoint and outcome (answered, forwarded, or the error status).",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.query_seconds = Histogram(
            "istream_query_seconds",
            "Time to answer a query from this worker's state (forwarded ones excluded).",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
            registry=r,
        )

        judged = ["model_version", "exposure", "cohort"]
        self.online_judged = Counter(
            "istream_online_judged",
            "Lists served (or ranked in shadow) that the user's next event judged, by online evaluation.",
            judged,
            registry=r,
        )
        self.online_hits = Counter(
            "istream_online_hits", "Judged lists that held the next event's item (hit@K).", judged, registry=r
        )
        self.online_reciprocal_rank = Counter(
            "istream_online_reciprocal_rank", "Sum of 1/rank of the next event's item over judged lists.", judged,
            registry=r,
        )  # fmt: skip
        self.online_ndcg = Counter(
            "istream_online_ndcg", "Sum of NDCG@K (1/log2(rank+1)) over judged lists.", judged, registry=r
        )
        self.online_new_items = Counter(
            "istream_online_new_items", "Judged lists whose next event's item was new to the user.", judged, registry=r
        )
        self.online_new_item_hits = Counter("istream_online_new_item_hits", "Hits among them.", judged, registry=r)
        self.online_unjudged = Counter(
            "istream_online_unjudged",
            "Applied events that judged no list, by reason (first_event, no_list, unknown_item).",
            ["model_version", "reason"],
            registry=r,
        )
        self.online_paired = Counter(
            "istream_online_paired",
            "Events that judged both the champion's and the challenger's list, by outcome (both, champion_only, "
            "challenger_only, neither).",
            ["champion", "challenger", "outcome"],
            registry=r,
        )

    def count_online(self, j: Judgements) -> None:
        """A batch's online evaluation (a handful of label sets: one add each)."""
        for labels, (judged, hits, rr, ndcg, new, new_hits) in j.judged.items():
            self.online_judged.labels(*labels).inc(judged)
            self.online_hits.labels(*labels).inc(hits)
            self.online_reciprocal_rank.labels(*labels).inc(rr)
            self.online_ndcg.labels(*labels).inc(ndcg)
            self.online_new_items.labels(*labels).inc(new)
            self.online_new_item_hits.labels(*labels).inc(new_hits)
        for labels, n in j.unjudged.items():
            self.online_unjudged.labels(*labels).inc(n)
        for pair, (n, both, champion_only, challenger_only, _, _) in j.paired.items():
            for outcome, count in (
                ("both", both), ("champion_only", champion_only), ("challenger_only", challenger_only),
                ("neither", n - both - champion_only - challenger_only),
            ):  # fmt: skip
                self.online_paired.labels(*pair, outcome).inc(count)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
