"""The continual-learning job (`istream finetune`): one run reads the recent window from Kafka,
fine-tunes the serving model on it (plus a replay sample of older windows), judges champion and
challenger on the newest slice, and publishes the challenger only if it is not worse.

Publishing is ordered so that a crash at any point leaves the registry consistent: the bundle is
exported into a scratch folder, copied into the registry under a hidden name, verified and renamed
(``Registry.publish``), and only then does ``CURRENT`` move (``Registry.promote``: verify, smoke
inference, atomic replace). A crash before the rename leaves only hidden leftovers; a crash after
it leaves a complete, verified, unpromoted version. The update message goes out last; workers also
watch ``CURRENT``, so a lost message only delays the swap.

Every run, whatever it decides, leaves a record in ``<registry>/decisions/`` and refreshes the
chart there. The replay sample lives in ``<registry>/finetune/replay.json``; a lock file beside it
keeps two jobs from running on one registry at once.

This module runs on a training node: models/ (torch) and the exporter are imported inside the
functions that need them, so the worker never loads them and ``istream --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stream_app.contracts import ModelUpdate
from stream_app.exceptions import InterestStreamError
from stream_app.finetune.kafka import (
    EventWindow,
    KafkaUnavailable,
    RetryPolicy,
    announce,
    read_catalog,
    read_window,
)
from stream_app.settings import Settings, given

if TYPE_CHECKING:
    from export.registry import Registry
    from models.continual.decisions import Decision
    from models.continual.window import WindowSplit

log = logging.getLogger(__name__)

STATE_DIR = "finetune"
REPLAY_FILE = "replay.json"
LOCK_FILE = ".job.lock"
# Points of the publish sequence, passed to ``on_stage`` (crash tests stop the process there).
EXPORTED, PUBLISHED, PROMOTED = "exported", "published", "promoted"


class FinetuneError(InterestStreamError):
    """The fine-tune job cannot run (no serving model, another job holds the registry, ...)."""


@dataclass(frozen=True)
class JobOptions:
    registry: Path
    window_s: float = 86_400.0
    replay_fraction: float = 0.3
    margin: float = 0.0
    holdout: float = 0.2  # newest share of the window's events the gate judges on
    min_train_events: int = 200
    min_judged_users: int = 20
    epochs: int = 5
    lr: float = 5e-3
    replay_capacity: int = 2000  # sequences
    replay_max_events: int = 64  # per sequence
    seed: int = 0
    threads: int = 1
    trial: str | None = None  # shadow or canary: run the published version beside CURRENT, for the guard to decide
    canary_share: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> JobOptions:
        base = {
            "registry": settings.registry_dir,
            "window_s": settings.finetune_window_s,
            "replay_fraction": settings.finetune_replay_fraction,
            "margin": settings.finetune_margin,
        }
        return cls(**given(base, overrides))

    @property
    def state_dir(self) -> Path:
        return self.registry / STATE_DIR


@contextlib.contextmanager
def job_lock(options: JobOptions) -> Iterator[None]:
    """Exclusive right to fine-tune into this registry (released when the process ends, even by kill -9)."""
    options.state_dir.mkdir(parents=True, exist_ok=True)
    with (options.state_dir / LOCK_FILE).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FinetuneError(
                f"another fine-tune job is running on registry {options.registry}; wait for it"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_registry(settings: Settings, options: JobOptions) -> Registry:
    from export.registry import Registry

    key = settings.bundle_signing_key
    return Registry(options.registry, signing_key=key.get_secret_value() if key is not None else None)


def champion_checkpoint(registry: Registry, version: str) -> Path:
    """The torch checkpoint inside the serving bundle, after every sha256 of the bundle checked out."""
    from export.integrity import verify_bundle

    bundle = registry.bundle_path(version)
    manifest = verify_bundle(bundle, registry.signing_key)
    folders = {Path(name).parent for name in manifest.checkpoint}
    if len(folders) != 1:
        raise FinetuneError(f"bundle {version} carries no single torch checkpoint folder; re-export it")
    return bundle / folders.pop()


def publish(
    registry: Registry,
    checkpoint_dir: Path,
    champion: str,
    on_stage: Callable[[str], None],
    trial: str | None = None,
    canary_share: float = 0.0,
) -> tuple[str, ModelUpdate | None]:
    """Export ``checkpoint_dir`` as the champion was exported (name, opset, optimized and int8 encoder
    alike; parent = ``champion``), put it in the registry, move CURRENT; returns the version and its
    update message. With ``trial`` (shadow or canary) CURRENT stays: the version runs beside it (no update
    message) until the guard (`istream guard`) promotes or rejects it on its live figures."""
    from export.bundle import export_bundle
    from export.manifest import MANIFEST
    from export.onnx_export import DEFAULT_OPSET
    from export.signatures import ENCODER_INT8

    like = registry.manifest(champion)
    with tempfile.TemporaryDirectory(prefix="istream-export-") as scratch:
        manifest = export_bundle(
            checkpoint_dir, Path(scratch) / "bundle", name=like.name, parent_version=champion,
            signing_key=registry.signing_key, int8=ENCODER_INT8 in like.graphs,
            optimize=bool(like.export.get("optimized")), opset=int(like.export.get("opset", DEFAULT_OPSET)),
        )  # fmt: skip
        on_stage(EXPORTED)
        version = registry.publish(Path(scratch) / "bundle")
    on_stage(PUBLISHED)
    if registry.current() != champion:
        raise FinetuneError(
            f"CURRENT moved from {champion} to {registry.current()} while this run trained; version {version} "
            "is published but not promoted (promote it with `istream models promote` if wanted)"
        )
    if trial is not None:
        registry.open_trial(version, trial, canary_share if trial == "canary" else 0.0, if_current=champion)
        return version, None
    registry.promote(version)
    on_stage(PROMOTED)
    bundle = registry.bundle_path(version)
    update = ModelUpdate(
        version=version,
        uri=bundle.resolve().as_uri(),
        sha256=hashlib.sha256((bundle / MANIFEST).read_bytes()).hexdigest(),
        created_at=manifest.created_at,
        metrics={k: float(v) for k, v in manifest.metrics.items() if isinstance(v, int | float)},
    )
    return version, update


def _no_stage(_: str) -> None:
    pass


def _trial_open(registry: Registry, options: JobOptions) -> str | None:
    """Why a run for a trial publishes nothing: the guard has not decided the open trial yet (a new one
    would replace it, and a challenger would never run long enough to be judged, or a promotion would
    lose its watch)."""
    trial = registry.trial() if options.trial is not None else None
    if trial is None:
        return None
    return f"trial of {trial.describe()} is still open; the guard decides it first (`istream models live`)"


def conclude(
    settings: Settings,
    options: JobOptions,
    window: EventWindow,
    split: WindowSplit,
    catalog: dict[str, str],
    *,
    started: float,
    on_stage: Callable[[str], None] = _no_stage,
) -> Decision:
    """Judge (and maybe publish) the fine-tune of ``split`` against CURRENT, feed the window to the replay
    sample and record the decision. The caller holds ``job_lock``."""
    import numpy as np

    from models.checkpoint import load_checkpoint
    from models.continual.challenge import replay_budget, run_round
    from models.continual.decisions import Decision, new_run_id, plot_decisions, write_decision
    from models.continual.finetune import FinetuneConfig, TextContext
    from models.continual.reservoir import ReplayReservoir

    registry = open_registry(settings, options)
    champion = registry.current()
    if champion is None:
        raise FinetuneError(
            f"registry {options.registry} has no CURRENT version to start from; "
            "export a model and promote it first (`istream export`, `istream models publish/promote`)"
        )
    skip = split.skip_reason or _trial_open(registry, options)
    decision = Decision(
        run_id=new_run_id(),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        decision="skipped",
        reason=skip or "",
        champion=champion,
        margin=options.margin,
        window={**window.stats(), **split.stats()},
        timing={"read_s": window.read_s},
    )
    reservoir = ReplayReservoir.open(
        options.state_dir / REPLAY_FILE, options.replay_capacity, options.replay_max_events, options.seed
    )
    reservoir.forget(window.forgotten)
    update = None
    if skip is None:
        replay = reservoir.sample(
            replay_budget(len(split.train), options.replay_fraction),
            np.random.default_rng([options.seed, reservoir.offered]),
        )
        cfg = FinetuneConfig(epochs=options.epochs, lr=options.lr, seed=options.seed, threads=options.threads)
        champion_dir = champion_checkpoint(registry, champion)
        with tempfile.TemporaryDirectory(prefix="istream-finetune-") as scratch:
            work = Path(scratch)
            text = TextContext.for_config(load_checkpoint(champion_dir).config, work / "embeddings")
            result = run_round(champion_dir, split, catalog, replay, cfg, options.margin, text, work, champion)
            decision.metrics = {"champion": result.champion_metrics, "challenger": result.challenger_metrics}
            decision.window.update(result.stats)
            decision.timing.update(result.timing)
            decision.decision, decision.reason = "rejected", result.reason
            if result.publish:
                t0 = time.perf_counter()
                decision.challenger, update = publish(
                    registry, result.challenger_dir, champion, on_stage, options.trial, options.canary_share
                )
                decision.decision, decision.trial = "published", options.trial
                decision.timing["publish_s"] = time.perf_counter() - t0
    reservoir.offer(window.events)
    reservoir.save()
    decision.window["replay_sample_sequences"] = len(reservoir)

    failure = None
    if update is not None:
        try:
            announce(settings, registry.manifest(decision.challenger).name, update, RetryPolicy.from_settings(settings))
            decision.announced = True
        except KafkaUnavailable as exc:
            decision.announced, failure = False, exc
    decision.timing["total_s"] = time.perf_counter() - started
    path = write_decision(options.registry, decision)
    plot_decisions(options.registry)
    log.info("run %s: decision record %s", decision.run_id, path)  # the summary is the caller's to print
    if failure is not None:
        raise FinetuneError(
            f"version {decision.challenger} is published and CURRENT, but the update message was not sent "
            f"({failure}); workers still pick it up from CURRENT"
        )
    return decision


def run_once(settings: Settings, options: JobOptions, on_stage: Callable[[str], None] = _no_stage) -> Decision:
    """One run: read the window, split it, fine-tune and judge, publish when the gate says so."""
    from models.continual.window import split_window

    started = time.perf_counter()
    policy = RetryPolicy.from_settings(settings)
    with job_lock(options):
        window = read_window(settings, int(options.window_s * 1000), policy)
        split = split_window(window.events, options.holdout, options.min_train_events, options.min_judged_users)
        catalog = read_catalog(settings, policy) if split.skip_reason is None else {}
        return conclude(settings, options, window, split, catalog, started=started, on_stage=on_stage)


def run_every(
    settings: Settings,
    options: JobOptions,
    every_s: float,
    runs: int | None = None,
    on_decision: Callable[[Decision], None] | None = None,
) -> None:
    """``run_once`` every ``every_s`` seconds (start to start), ``runs`` times or until stopped."""
    done = 0
    while runs is None or done < runs:
        started = time.monotonic()
        decision = run_once(settings, options)
        if on_decision is not None:
            on_decision(decision)
        done += 1
        if runs is None or done < runs:
            time.sleep(max(0.0, every_s - (time.monotonic() - started)))
