"""One frozen settings object, built once at start-up and passed down.

Every setting reads ``ISTREAM_<NAME>`` from the environment (the bootstrap servers also
``KAFKA_BOOTSTRAP_SERVERS``); CLI flags override by passing values to ``Settings(...)``.
Nothing below this module reads ``os.environ``. The README table is generated from the
field docs here: ``python -m stream_app.settings``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "ISTREAM_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore", populate_by_name=True)

    # Kafka connection
    bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "ISTREAM_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers, comma separated.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security.protocol."
    )
    sasl_mechanism: str | None = Field(None, description="SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).")
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: str | None = Field(None, description="SASL password.")
    ssl_ca_location: str | None = Field(None, description="CA bundle used to verify the brokers.")
    ssl_certificate_location: str | None = Field(None, description="Client certificate (mutual TLS).")
    ssl_key_location: str | None = Field(None, description="Client private key (mutual TLS).")
    kafka_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Longest wait for the cluster to answer (metadata, topic admin, deliveries at close): past it a "
        "command, the client API or a starting worker fails, exit code 69 when no broker answered.",
    )

    # Topics
    topic_prefix: str = Field("interest", description="Prefix of every topic name (`<prefix>.events`, ...).")
    partitions: int = Field(8, ge=1, description="Partitions of the topics `istream topics create` makes.")
    replication_factor: int = Field(1, ge=1, description="Replication factor of created topics.")

    # Local broker
    broker_host: str = Field("127.0.0.1", description="Address the embedded Tansu broker listens on.")
    broker_port: int = Field(9092, ge=1, le=65535, description="Port of the embedded Tansu broker.")
    run_dir: Path = Field(Path("var"), description="Directory for pid files, logs and local state.")

    # Consumers
    session_timeout_ms: int = Field(
        10_000,
        ge=500,
        description="Consumer-group session timeout (ms); on Tansu a group join waits about half of it.",
    )

    # Model registry
    registry_dir: Path = Field(Path("var/registry"), description="Model registry: one folder per version and CURRENT.")
    bundle_signing_key: SecretStr | None = Field(
        None, description="HMAC-SHA256 key: export signs bundles; loading refuses unsigned or wrongly signed ones."
    )

    # ONNX Runtime (export/sessions.py)
    ort_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="auto = CUDA when a GPU is present and its provider loads, else CPU. On CUDA, fp32 graphs run "
        "without TF32 (its default put the encoder and step 2e-4 away from torch on an H200).",
    )
    ort_intra_op_threads: int = Field(0, ge=0, description="Threads inside one ONNX Runtime operator (0 = per core).")
    ort_inter_op_threads: int = Field(0, ge=0, description="Threads across independent operators (0 = ORT default).")
    ort_graph_optimization: Literal["disable", "basic", "extended", "all"] = Field(
        "all", description="ONNX Runtime graph optimization level."
    )
    ort_allow_spinning: bool = Field(
        False, description="ONNX Runtime threads spin between runs: helps on idle dedicated cores, hurts shared ones."
    )
    worker_blas_threads: int = Field(
        1,
        ge=0,
        description="numpy BLAS threads of a worker (the top-K product; 0 = the library's default). Idle BLAS "
        "threads spin: with the default of one per core they took half a core on 2 cores for no throughput.",
    )
    encoder_precision: Literal["auto", "fp32", "int8"] = Field(
        "auto",
        description="Comment encoder: auto = the bundle's int8 encoder on CPU when it has one, else fp32. int8 is a "
        "CPU graph: forced on a GPU machine it runs on the CPU.",
    )
    encode_batch_size: int = Field(32, ge=1, description="Comments per encoder run (grouped by length to cut padding).")

    # Worker (`istream worker`)
    worker_app_id: str | None = Field(
        None, description="Faust app id = consumer group and changelog prefix (default `<prefix>-worker`)."
    )
    worker_data_dir: Path | None = Field(
        None, description="Local RocksDB state, one folder per app id inside (default `<run_dir>/worker`)."
    )
    worker_web_port: int = Field(
        6066, ge=0, le=65535, description="Worker web port: the query API, /health and /metrics; 0 = off."
    )
    worker_web_host: str | None = Field(
        None,
        description="Host name or address other workers reach this one's web port at (they forward queries for "
        "its users there); default: the machine's host name. In Kubernetes, the pod IP.",
    )
    worker_batch_size: int = Field(500, ge=1, description="Most events the worker processes in one micro-batch.")
    worker_batch_ms: int = Field(
        20,
        ge=1,
        description="Longest wait (ms) for a micro-batch to fill. Below full load every batch waits this long; a "
        "shorter wait makes more, smaller batches, each written with its own broker round trips. Produce -> "
        "recommendation p99 at 1,000 events/s on 2 cores: 125 / 101 / 86 / 70 / 99 ms for 1 / 5 / 10 / 20 / 40.",
    )
    worker_fetch_max_wait_ms: int = Field(
        20,
        ge=1,
        description="Longest a consumer fetch waits for records. Tansu holds a fetch that long even when records "
        "arrive, so it adds to latency there; Apache Kafka answers at once, raise it to poll less when idle.",
    )
    worker_state_cache_users: int = Field(
        10_000,
        ge=0,
        description="Decoded states of the most recently served users kept in memory, so their next events skip the "
        "state decode (about 28 KB a steady user: deploy/README.md, Sizing); 0 = off.",
    )
    worker_commit_interval_s: float = Field(2.8, gt=0, description="Seconds between offset commits.")
    worker_event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop",
        description="Event loop of the worker's Faust app and its consumer thread. uvloop: 10 % less worker CPU per "
        "event than asyncio's own loop (256 vs 285 us, clicks, 2 cores); asyncio where uvloop is missing (Windows).",
    )
    worker_single_record_batches: bool = Field(
        True,
        description="Each changelog write ends every partition with a one-record batch: Tansu's high watermark "
        "counts a batch as one record, so table recovery would stop short. Turn off on Apache Kafka.",
    )
    ann_min_items: int = Field(
        50_000,
        ge=0,
        description="Catalogs with at least this many items are ranked by the approximate search (an HNSW graph, "
        "exact re-scoring), smaller ones exactly: `istream bench index` found the two costing the same between "
        "30,000 and 100,000 items (docs/ranking.md); 0 = always.",
    )
    ann_ef_search: int = Field(128, ge=1, description="Least candidates the approximate search walks for per query.")
    ann_connectivity: int = Field(32, ge=4, description="Neighbours per node of the approximate search's graph (M).")
    ann_ef_construction: int = Field(
        100, ge=8, description="Candidates each item's insertion into the approximate search's graph walks for."
    )
    ann_build_threads: int = Field(
        0,
        ge=0,
        description="Threads that build a model's search graph (start-up, beside the serving model on a hot-swap); "
        "0 = every core. Fewer leave the serving thread a core while a large catalog's graph is built.",
    )
    ann_audit_every: int = Field(
        1000,
        ge=0,
        description="One query in this many is also ranked exactly and the approximate search's recall counted "
        "(`istream_ranking_audit_items_total`); 0 = never.",
    )
    ann_index_dir: Path | None = Field(
        None,
        description="Where built search graphs are kept, one per bundle, so a restart loads its graph instead of "
        "building it (default `<run_dir>/ann`).",
    )
    misrouted: Literal["forward", "deadletter"] = Field(
        "forward",
        description="An event or tombstone off its user's partition (murmur2 of the key, as the client and Java "
        "producers pick): forward it there, or dead-letter it (`misrouted`). Counted either way.",
    )
    top_k: int = Field(10, ge=1, description="Recommendations per update.")
    lateness_ms: int = Field(
        86_400_000,
        ge=0,
        description="Events older than the user's newest by more than this go to dead-letter (`late`); younger "
        "ones are applied in arrival order (event-time policy: stream_app/worker/event_time.py).",
    )
    future_skew_ms: int = Field(
        300_000,
        ge=0,
        description="Events stamped more than this ahead of the worker's clock go to dead-letter (`future`).",
    )
    recent_ids: int = Field(
        64,
        ge=1,
        le=4096,
        description="Event ids each user's state remembers at least (16 B each), to drop an event sent twice "
        "whatever its ts; redeliveries by Kafka are dropped by offset, whatever their number.",
    )
    id_horizon_ms: int = Field(
        300_000,
        ge=0,
        description="Event ids within this of the user's newest event are all remembered too (up to 4,096): "
        "bursts in one millisecond sent twice are dropped whole. Default: librdkafka's delivery timeout.",
    )
    state_ttl_s: float = Field(
        0.0,
        ge=0,
        description="A user's state is deleted (a tombstone through the changelog) once no event was applied to it "
        "for this many seconds of the worker's clock; 0 = never. Forgotten users' markers never expire.",
    )
    state_window: int = Field(32, ge=1, le=65535, description="Recent events kept per user to rebuild its state.")
    seen_items: int = Field(100, ge=0, le=65535, description="Recently seen items kept per user (not recommended).")
    cold_start_events: int = Field(
        2, ge=0, description="Users with fewer applied events get trending items instead of model scores."
    )
    trending_half_life_s: float = Field(3600.0, gt=0, description="Half-life (event time) of trending popularity.")

    # Online evaluation (stream_app/worker/online_eval.py) and the guard (stream_app/finetune/guard.py)
    online_evaluation: bool = Field(
        True,
        description="Each user's next event judges the top-K the worker served after the previous one (hit@K, "
        "reciprocal rank, NDCG@K): Prometheus metrics and `<prefix>.online-metrics` records. Off: states keep no list.",
    )
    online_window_s: float = Field(
        60.0, gt=0, description="Seconds of counts per `<prefix>.online-metrics` record of each worker."
    )
    online_session_gap_s: float = Field(
        1800.0,
        gt=0,
        description="An event this long after the user's previous one judges its list in the `returning` cohort.",
    )
    guard_judged_events: int = Field(
        20_000,
        ge=1,
        description="The guard decides a trial (promote or reject) or a watch after a promotion (keep or roll back) "
        "once this many events judged both models (a canary: the challenger's served lists). With the default "
        "margin, a model as good as the other passes about 93 % of the time when 20 % of events hit with one only.",
    )
    guard_margin: float = Field(
        0.01,
        ge=0,
        description="Live HR@K a newer model may lose: a challenger is promoted, and a promotion kept, only when the "
        "lower confidence bound of its HR@K minus the other model's is above -margin; else rejected, rolled back.",
    )
    guard_confidence: float = Field(
        0.95, gt=0.5, lt=1, description="One-sided confidence of the guard's bounds on the live HR@K difference."
    )
    model_poll_s: float = Field(2.0, gt=0, description="Seconds between checks of the registry's CURRENT pointer.")

    # Query API clients (stream_app.client.RecommendationClient)
    query_url: str = Field(
        "http://127.0.0.1:6066",
        description="URL of any worker's web port for the query API (a worker forwards other workers' users).",
    )

    # Fine-tune job (`istream finetune`)
    finetune_window_s: float = Field(86_400.0, gt=0, description="How far back (broker time) the job reads events.")
    finetune_replay_fraction: float = Field(
        0.3, ge=0, lt=1, description="Share of each fine-tune's training events drawn from the replay sample."
    )
    finetune_margin: float = Field(
        0.0, description="Publish only when the challenger's NDCG@10 >= the champion's + this margin."
    )
    finetune_attempts: int = Field(5, ge=1, description="Tries of each Kafka call before the fine-tune job gives up.")
    finetune_backoff_s: float = Field(1.0, gt=0, description="First wait between Kafka tries; doubles each time.")
    finetune_kafka_timeout_s: float = Field(
        10.0, gt=0, description="Timeout of one Kafka request of the fine-tune job (metadata, offsets, delivery)."
    )

    def kafka_config(self) -> dict[str, Any]:
        """librdkafka (confluent-kafka) client settings for this cluster."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
        }
        conf.update({k: v for k, v in optional.items() if v is not None})
        return conf


def given(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` (values from settings) with the ``overrides`` that were given (not None: a CLI flag left out)."""
    return {**base, **{k: v for k, v in overrides.items() if v is not None}}


def env_name(field: str) -> str:
    info = Settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return " / ".join(str(c) for c in alias.choices)
    return f"{ENV_PREFIX}{field.upper()}"


def describe_errors(exc: ValidationError) -> str:
    """A settings validation error on one line: ``ISTREAM_PARTITIONS=0: Input should be ...; ...``."""
    parts = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        name = env_name(field) if field in Settings.model_fields else field
        parts.append(f"{name}={error.get('input')!r}: {error['msg']}")
    return "; ".join(parts)


def markdown_table() -> str:
    """The README's configuration table."""
    rows = ["| env | default | meaning |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = "" if info.default is None else f"`{info.default}`"
        rows.append(f"| `{env_name(name)}` | {default} | {info.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
