"""The `istream` command. Each subcommand lives in its own module and is imported only when
used, so `istream worker` never loads torch and `istream --help` stays fast.

Every failure ends as one `Error:` line on stderr and an exit code from ``stream_app.exceptions``
(README, "Exit codes"); a usage error names the command's ``--help`` on that same line.
"""

from __future__ import annotations

import importlib
import sys

import click

from stream_app import __version__
from stream_app.exceptions import EXIT_INTERRUPTED

# command name -> "module:attribute" of a click command or group
SUBCOMMANDS: dict[str, str] = {
    "broker": "stream_app.cli.broker:broker",
    "topics": "stream_app.cli.topics:topics",
    "produce": "stream_app.cli.produce:produce",
    "tail": "stream_app.cli.tail:tail",
    "convert": "stream_app.cli.convert:convert",
    "generate": "stream_app.cli.generate:generate",
    "train": "stream_app.cli.train:train",
    "evaluate": "stream_app.cli.evaluate:evaluate",
    "export": "stream_app.cli.export:export",
    "models": "stream_app.cli.models:models",
    "bench": "stream_app.cli.bench:bench",
    "bootstrap": "stream_app.cli.bootstrap:bootstrap",
    "worker": "stream_app.cli.worker:worker",
    "finetune": "stream_app.cli.finetune:finetune",
    "guard": "stream_app.cli.guard:guard",
    "report": "stream_app.cli.report:report",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="istream")
def cli() -> None:
    """interest-stream: real-time user-interest updates from a Kafka event stream."""


def main() -> None:
    try:
        code = cli.main(prog_name="istream", standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        click.echo(f"Error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Error: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    # an int is the status of --help, --version or ctx.exit(); a command itself returns None
    sys.exit(code if isinstance(code, int) else 0)
