"""Fixtures every stream_app test folder shares.

Session-scoped
    ``tiny_encoder_dir``, ``tiny_checkpoint``, ``tiny_bundle``   from tests/export/conftest.py, imported
                                   here once so the worker, bench and cli tests share one build per run
                                   (a conftest that imports them builds its own).
"""

from tests.export.conftest import tiny_bundle, tiny_checkpoint, tiny_encoder_dir  # noqa: F401 - shared fixtures
