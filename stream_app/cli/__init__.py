"""The `istream` command. Each subcommand lives in its own module and is imported only when
used, so `istream worker` never loads torch and `istream --help` stays fast."""

from __future__ import annotations

import importlib

import click

from stream_app import __version__

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
    cli(prog_name="istream")
