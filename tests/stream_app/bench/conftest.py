"""Bench fixtures: the worker tests' tiny bundle in a registry (per test)."""

from __future__ import annotations

from tests.export.conftest import tiny_bundle, tiny_checkpoint, tiny_encoder_dir  # noqa: F401 - shared fixtures
from tests.stream_app.worker.conftest import registry  # noqa: F401 - shared fixture
