"""`istream worker`: run the Faust worker (update user states, emit vectors and recommendations)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--registry", type=click.Path(file_okay=False, path_type=Path), help="Model registry directory.")
@click.option("--bootstrap", help="Kafka bootstrap servers (host:port,...).")
@click.option("--web-port", type=int, help="Web port serving /metrics (0 = off).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Local RocksDB state directory.")
@click.option("--loglevel", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
def worker(registry: Path | None, bootstrap: str | None, web_port: int | None, data_dir: Path | None, loglevel: str):
    """Consume events, update each user's interest state and emit vectors and recommendations."""
    from stream_app.exceptions import InterestStreamError
    from stream_app.settings import Settings
    from stream_app.worker.app import create_app, use_event_loop

    overrides = {
        "registry_dir": registry,
        "bootstrap_servers": bootstrap,
        "worker_web_port": web_port,
        "worker_data_dir": data_dir,
    }
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    current = settings.registry_dir / "CURRENT"
    if not current.is_file():
        raise click.ClickException(
            f"no model in the registry {settings.registry_dir} (no CURRENT); train, export and publish one first, "
            "or pass --registry"
        )
    try:
        use_event_loop(settings)
        app = create_app(settings)
    except InterestStreamError as exc:
        raise click.ClickException(str(exc)) from None
    from faust.worker import Worker

    Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
