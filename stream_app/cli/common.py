"""What several `istream` commands share: settings built from env + flags, and error reporting."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from stream_app.exceptions import InterestStreamError
from stream_app.settings import Settings


def istream_argv() -> list[str]:
    """Command line that runs `istream` with this interpreter (its console script when installed)."""
    script = Path(sys.executable).with_name("istream")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from stream_app.cli import main; main()"]


def make_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with every flag the user gave (not None) on top."""
    try:
        return Settings(**{name: value for name, value in overrides.items() if value is not None})
    except ValidationError as exc:
        raise click.UsageError(f"invalid setting: {exc}") from None


def reports_errors(command: Callable) -> Callable:
    """Turn the project's errors into a one-line message and exit code 1 instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except InterestStreamError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


bootstrap_option = click.option(
    "--bootstrap", "bootstrap_servers", help="Kafka bootstrap servers (default: KAFKA_BOOTSTRAP_SERVERS)."
)
prefix_option = click.option("--prefix", "topic_prefix", help="Topic name prefix (default: ISTREAM_TOPIC_PREFIX).")
