"""`istream broker`: the local Tansu broker (in memory) for development and tests."""

from __future__ import annotations

import click

from stream_app import broker as local_broker
from stream_app.cli.common import make_settings, reports_errors


@click.group(invoke_without_command=True)
@click.option("--host", help="Listen address (default: ISTREAM_BROKER_HOST, 127.0.0.1).")
@click.option("--port", type=int, help="Listen port (default: ISTREAM_BROKER_PORT, 9092).")
@click.option("--detach", is_flag=True, help="Run in the background; pid file and log go to the run dir.")
@click.option("--run-dir", type=click.Path(file_okay=False), help="Where --detach writes (default: ISTREAM_RUN_DIR).")
@click.pass_context
@reports_errors
def broker(ctx: click.Context, host: str | None, port: int | None, detach: bool, run_dir: str | None) -> None:
    """Start a Kafka-protocol broker (Tansu, memory storage) and print its bootstrap address.

    In the foreground (default) Ctrl-C stops it. Topics live only as long as the broker.
    """
    if ctx.invoked_subcommand is not None:
        return
    settings = make_settings(broker_host=host, broker_port=port, run_dir=run_dir)
    if detach:
        started = local_broker.start_detached(settings.broker_host, settings.broker_port, settings.run_dir)
        click.echo(started.bootstrap)
        click.echo(
            f"broker running in the background (pid {started.pid}, log {started.log}); "
            "stop it with `istream broker stop`",
            err=True,
        )
        return

    def ready(bootstrap: str) -> None:
        click.echo(bootstrap)
        click.echo("broker ready; Ctrl-C stops it", err=True)

    code = local_broker.run_foreground(settings.broker_host, settings.broker_port, on_ready=ready)
    if code not in (0, None):
        raise click.ClickException(f"the broker exited with code {code}")


@broker.command()
@click.option("--run-dir", type=click.Path(file_okay=False), help="Run dir the broker was started with.")
@reports_errors
def stop(run_dir: str | None) -> None:
    """Stop the broker that `istream broker --detach` started (and nothing else)."""
    settings = make_settings(run_dir=run_dir)
    stopped = local_broker.stop_detached(settings.run_dir)
    if stopped is None:
        click.echo(f"no broker started from {settings.run_dir} is running")
    else:
        click.echo(f"stopped the broker on {stopped.bootstrap} (pid {stopped.pid})")
