"""`istream models`: list, show, verify, publish, promote and roll back bundles in the registry; run one
beside CURRENT (a trial: shadow or canary)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from stream_app.cli.common import bootstrap_option, make_settings, prefix_option, reports_errors

registry_option = click.option(
    "--registry",
    "registry_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Registry directory (default: ISTREAM_REGISTRY_DIR).",
)


def open_registry(registry_dir: Path | None, *, create: bool = False) -> tuple[Any, Any]:
    """(Registry, RuntimeOptions) from settings and the --registry flag. Only ``create`` (publish) may
    name a folder that does not exist yet: elsewhere a missing folder is a wrong path, not an empty registry."""
    from export.exceptions import RegistryError
    from export.registry import Registry
    from export.runtime import RuntimeOptions

    settings = make_settings(registry_dir=registry_dir)
    if not create and not settings.registry_dir.is_dir():
        raise RegistryError(
            f"no registry at {settings.registry_dir} (no such directory); pass --registry or set "
            "ISTREAM_REGISTRY_DIR (`istream models publish` creates one)"
        )
    options = RuntimeOptions.from_settings(settings)
    return Registry(settings.registry_dir, signing_key=options.signing_key), options


def _version_or_current(registry: Any, version: str | None) -> str:
    version = version or registry.current()
    if version is None:
        raise click.UsageError(f"registry {registry.root} has no CURRENT version; name one (see `istream models list`)")
    return version


def _metrics_summary(metrics: dict[str, Any]) -> str:
    flat = {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return " ".join(f"{k}={v:.4g}" for k, v in list(flat.items())[:4])


@click.group()
def models() -> None:
    """Model bundles in the registry (one folder per version, CURRENT pointer)."""


@models.command("list")
@registry_option
@reports_errors
def list_versions(registry_dir: Path | None) -> None:
    """Published versions, oldest first; * marks CURRENT, ~ the version on trial beside it."""
    registry, _ = open_registry(registry_dir)
    current = registry.current()
    trial = registry.trial()
    versions = registry.versions()
    if not versions:
        click.echo(f"registry {registry.root} is empty; publish a bundle with `istream models publish`")
        return
    for version in versions:
        manifest = registry.manifest(version)
        mark = "*" if version == current else "~" if trial is not None and version == trial.version else " "
        parent = manifest.parent_version or "-"
        click.echo(f"{mark} {version}  {manifest.created_at}  parent={parent}  {_metrics_summary(manifest.metrics)}")
    if trial is not None:
        click.echo(f"trial: {trial.describe()}")


@models.command()
@click.argument("version", required=False)
@registry_option
@reports_errors
def show(version: str | None, registry_dir: Path | None) -> None:
    """Print a version's manifest (default: CURRENT)."""
    import msgspec

    registry, _ = open_registry(registry_dir)
    manifest = registry.manifest(_version_or_current(registry, version))
    click.echo(json.dumps(msgspec.to_builtins(manifest), indent=2))


@models.command()
@click.argument("version", required=False)
@registry_option
@reports_errors
def verify(version: str | None, registry_dir: Path | None) -> None:
    """Recompute every sha256, check the signature (when a key is set) and run a smoke inference."""
    registry, options = open_registry(registry_dir)
    version = _version_or_current(registry, version)
    manifest = registry.verify(version, options)
    signed = "signature ok" if options.signing_key else "no signing key configured"
    click.echo(f"{version}: {len(manifest.files)} files ok, {signed}, smoke inference ok")


@models.command()
@click.argument("bundle_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--promote", is_flag=True, help="Also make it the CURRENT version.")
@registry_option
@reports_errors
def publish(bundle_dir: Path, promote: bool, registry_dir: Path | None) -> None:
    """Copy a verified bundle (from `istream export`) into the registry."""
    registry, options = open_registry(registry_dir, create=True)
    version = registry.publish(bundle_dir)
    click.echo(f"published {version} to {registry.root}")
    if promote:
        registry.promote(version, options)
        click.echo(f"CURRENT = {version}")


@models.command()
@click.argument("version")
@registry_option
@reports_errors
def promote(version: str, registry_dir: Path | None) -> None:
    """Verify VERSION and make it CURRENT (workers swap to it)."""
    registry, options = open_registry(registry_dir)
    registry.promote(version, options)
    click.echo(f"CURRENT = {version}")


@models.command()
@registry_option
@reports_errors
def rollback(registry_dir: Path | None) -> None:
    """Make the version CURRENT replaced current again."""
    registry, options = open_registry(registry_dir)
    click.echo(f"CURRENT = {registry.rollback(options)}")


@models.command()
@click.argument("version")
@click.option(
    "--canary",
    "share",
    type=click.FloatRange(0, 1, min_open=True),
    help="Serve this share of users (a stable hash of user_id) with VERSION; default: shadow (ranked and judged "
    "on the same events, never shown).",
)
@registry_option
@reports_errors
def trial(version: str, share: float | None, registry_dir: Path | None) -> None:
    """Verify VERSION and run it beside CURRENT in every worker, its lists judged online like CURRENT's;
    the guard (`istream finetune`, `istream guard`) promotes or rejects it on those figures."""
    registry, options = open_registry(registry_dir)
    opened = registry.open_trial(version, "canary" if share else "shadow", share or 0.0, options=options)
    click.echo(f"TRIAL = {opened.describe()}")


@models.command("end-trial")
@registry_option
@reports_errors
def end_trial(registry_dir: Path | None) -> None:
    """Stop running the trial version beside CURRENT (CURRENT stays)."""
    registry, _ = open_registry(registry_dir)
    ended = registry.close_trial()
    click.echo(f"trial of {ended.version} ended" if ended is not None else "no trial was open")


@models.command()
@registry_option
@click.option("--decisions", type=click.IntRange(min=0), default=5, show_default=True, help="Guard decisions shown.")
@bootstrap_option
@prefix_option
@reports_errors
def live(registry_dir: Path | None, decisions: int, bootstrap_servers: str | None, topic_prefix: str | None) -> None:
    """Live figures from the workers' online metrics: HR@K of each version by exposure (served: shown to
    users; shadow: ranked beside), the open trial's comparison, and the guard's latest decisions."""
    from stream_app.finetune.guard import GuardConfig, LiveFigures, OnlineMetricsFeed, read_records

    settings = make_settings(bootstrap_servers=bootstrap_servers, topic_prefix=topic_prefix, registry_dir=registry_dir)
    registry, _ = open_registry(registry_dir)
    feed = OnlineMetricsFeed(settings)
    try:
        figures = LiveFigures(feed.read())
    finally:
        feed.close()
    current, trial = registry.current(), registry.trial()
    rows = figures.by_version()
    if not rows:
        click.echo("no online figures yet (workers send one record per ISTREAM_ONLINE_WINDOW_S)")
    for (version, exposure), (judged, hits) in rows.items():
        mark = "*" if version == current else "~" if trial is not None and version == trial.version else " "
        click.echo(f"{mark} {version}  {exposure:<6}  judged={judged}  hits={hits}  HR={hits / judged:.4f}")
    if trial is not None:
        comparison = figures.trial(trial, GuardConfig.from_settings(settings).confidence)
        click.echo(f"trial: {trial.describe()}: " + (comparison.describe() if comparison else "nothing judged yet"))
    for record in read_records(registry.root)[-decisions:] if decisions else []:
        click.echo(f"guard {record.at}: {record.summary()}")
