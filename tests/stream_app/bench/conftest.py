"""Bench fixtures: the worker tests' tiny bundle in a registry (per test)."""

from __future__ import annotations

from tests.stream_app.worker.conftest import registry, runtime  # noqa: F401 - shared fixtures
