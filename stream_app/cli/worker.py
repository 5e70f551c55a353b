"""`istream worker`: run the Faust worker (update user states, emit vectors and recommendations)."""

from __future__ import annotations

from pathlib import Path

import click

from stream_app.cli.common import make_settings, reports_errors


@click.command()
@click.option("--registry", type=click.Path(file_okay=False, path_type=Path), help="Model registry directory.")
@click.option("--bootstrap", help="Kafka bootstrap servers (host:port,...).")
@click.option("--web-port", type=click.IntRange(0, 65535), help="Web port serving /metrics (0 = off).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Local RocksDB state directory.")
@click.option("--loglevel", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
@reports_errors
def worker(registry: Path | None, bootstrap: str | None, web_port: int | None, data_dir: Path | None, loglevel: str):
    """Consume events, update each user's interest state and emit vectors and recommendations.

    Before it starts, the worker checks that the cluster answers (within ISTREAM_KAFKA_TIMEOUT_S)
    and has every topic, and verifies the registry's CURRENT model; any of these failing is one
    error line and nothing is created on the cluster.
    """
    from stream_app.exceptions import ConfigError
    from stream_app.worker.app import create_app, use_event_loop

    settings = make_settings(
        registry_dir=registry, bootstrap_servers=bootstrap, worker_web_port=web_port, worker_data_dir=data_dir
    )
    if not (settings.registry_dir / "CURRENT").is_file():
        raise ConfigError(
            f"no model in the registry {settings.registry_dir} (no CURRENT); train, export and publish one first, "
            "or pass --registry"
        )
    from mode.utils.logging import setup_logging

    # what create_app logs (the model it loaded) in Faust's format; Faust sets it up again on start
    setup_logging(loglevel=loglevel)
    use_event_loop(settings)
    app = create_app(settings)
    from faust.worker import Worker

    Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
