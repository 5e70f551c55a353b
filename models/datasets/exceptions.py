"""Errors of the dataset readers, converters and generator (``models`` never imports ``stream_app``)."""


class DatasetError(Exception):
    """An input file is missing, unreadable or not in the expected format; the message says which and why."""
