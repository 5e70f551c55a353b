"""What several `istream` commands share: settings built from env + flags, and error reporting."""

from __future__ import annotations

import functools
import logging
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import click
from pydantic import ValidationError

from stream_app.exceptions import InterestStreamError
from stream_app.settings import Settings, describe_errors


def istream_argv() -> list[str]:
    """Command line that runs `istream` with this interpreter (its console script when installed)."""
    script = Path(sys.executable).with_name("istream")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from stream_app.cli import main; main()"]


class CommandError(InterestStreamError):
    """An `istream` command run as a subprocess failed or timed out."""


STDERR_TAIL_CHARS = 3000


def run_istream(
    *args: object, env: dict[str, str] | None = None, timeout: float | None = None, echo: TextIO = sys.stdout
) -> str:
    """Run `istream ARGS` as a user would, echoing the command line to ``echo``; its stdout, or
    ``CommandError`` with the end of its stderr."""
    words = [str(a) for a in args]
    shown = f"istream {shlex.join(words)}"
    print(f"$ {shown}", file=echo, flush=True)
    try:
        result = subprocess.run([*istream_argv(), *words], env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CommandError(f"`{shown}` did not finish within {timeout:.0f} s") from None
    if result.returncode != 0:
        raise CommandError(f"`{shown}` failed:\n{result.stderr.strip()[-STDERR_TAIL_CHARS:]}")
    return result.stdout


PROJECT_LOGGERS = ("stream_app", "models", "export")


def log_to_stderr(level: int = logging.INFO) -> None:
    """The project's log lines at ``level`` on stderr; other libraries' from WARNING only (ONNX Runtime's
    quantizer alone logs 36 INFO lines per int8 export)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(level)


def make_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with every flag the user gave (not None) on top."""
    try:
        return Settings(**{name: value for name, value in overrides.items() if value is not None})
    except ValidationError as exc:
        raise click.UsageError(f"invalid setting {describe_errors(exc)}") from None


def reports_errors(command: Callable) -> Callable:
    """Turn the project's errors into a one-line message and the error's exit code instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except InterestStreamError as exc:
            error = click.ClickException(str(exc))
            error.exit_code = exc.exit_code
            raise error from None

    return wrapper


bootstrap_option = click.option(
    "--bootstrap", "bootstrap_servers", help="Kafka bootstrap servers (default: KAFKA_BOOTSTRAP_SERVERS)."
)
prefix_option = click.option("--prefix", "topic_prefix", help="Topic name prefix (default: ISTREAM_TOPIC_PREFIX).")
