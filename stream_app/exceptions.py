"""Error root of the project. Each package raises subclasses of ``InterestStreamError``.

``exit_code`` is what ``istream`` exits with when the error stops a command (README, "Exit codes").
"""

EXIT_FAILED = 1
EXIT_USAGE = 2  # click's own code for a bad option or argument
EXIT_UNAVAILABLE = 69  # sysexits.h EX_UNAVAILABLE: try again once the cluster answers
EXIT_WORKER_FAILED = 70  # sysexits.h EX_SOFTWARE: a running worker stopped on an unexpected error
EXIT_INTERRUPTED = 130  # 128 + SIGINT


class InterestStreamError(Exception):
    """Root of every error this project raises on purpose."""

    exit_code = EXIT_FAILED


class ConfigError(InterestStreamError):
    """A setting is missing or has a value that cannot work."""


class ClientError(InterestStreamError):
    """A record could not be delivered to or read from Kafka, or a topic it needs is missing."""


class ClusterUnreachable(ClientError):
    """No broker of the cluster answered within ``ISTREAM_KAFKA_TIMEOUT_S``."""

    exit_code = EXIT_UNAVAILABLE
