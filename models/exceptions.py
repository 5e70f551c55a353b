"""Errors of the model code (``models`` never imports ``stream_app``, so it has its own root)."""


class ModelError(Exception):
    """Root of the errors raised on purpose by ``models``."""


class CheckpointError(ModelError):
    """A checkpoint directory is missing a file or its files do not fit together."""


class TrainingError(ModelError):
    """The training data cannot train a model (too few users or events)."""
