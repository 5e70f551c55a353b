"""The guard: promotes a challenger on its live figures, and rolls back a promotion that does worse live.

It reads the workers' ``<prefix>.online-metrics`` records and the registry's CURRENT and TRIAL, and acts
only through the registry (promote, rollback, open and end trials), so workers follow as they follow any
operator. Every decision is recorded with its figures in ``<registry>/guard/``.

- A *challenge* (a trial of a candidate: `istream finetune --trial`, `istream models trial`) is decided
  once the events that judged both models reach ISTREAM_GUARD_JUDGED_EVENTS (a canary: the challenger's
  served lists): promoted when the newer model is shown not worse than the champion by more than
  ISTREAM_GUARD_MARGIN, else rejected. A promotion opens a *watch*: the version it replaced runs beside
  it in shadow.
- A promotion by hand (CURRENT moved, no record names it) is watched the same way.
- A *watch* is decided by the same test with the same figures: kept when the promoted model is shown not
  worse than the one it replaced by more than the margin, else rolled back (only while it is still
  CURRENT).
- A trial whose champion is no longer CURRENT is ended (its figures compare against a model no longer
  served).

The test. Shadow: each event that judged both lists is a pair of hits (newer, older); the difference
of hit rates d = (newer-only − older-only) / n is the mean of per-event differences in {−1, 0, 1}, so
the pairing removes the variance between events (McNemar's setting). Its one-sided lower bound at
ISTREAM_GUARD_CONFIDENCE is the Wald bound after adding 1/2 to each cell of the 2x2 table (Agresti & Min,
2005, "Simple improved confidence intervals for comparing matched proportions": near-nominal coverage
where plain Wald collapses with few discordant pairs). Canary: the arms serve disjoint users (a hash
of user_id), so the served hit rates are compared unpaired, with Agresti & Caffo's (2000) adjustment
(one hit and one miss added to each arm). The decision is taken once, at the first look with enough
events, so the stated confidence holds for it. The half width of the bound is about
z·sqrt(discordant share / n): set the judged events so it is below the margin, or models that are
equal are rejected (and rolled back) for want of evidence.

In shadow the champion's lists are the ones shown, and a user's next event may follow what was shown:
that favours the champion, so the paired test errs towards keeping it.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from stream_app import topics
from stream_app.contracts import OnlineMetrics
from stream_app.exceptions import InterestStreamError
from stream_app.settings import Settings, given

log = logging.getLogger(__name__)
GUARD_DIR = "guard"
PROMOTED, REJECTED, KEPT, ROLLED_BACK, WATCHING, ENDED = (
    "promoted", "rejected", "kept", "rolled_back", "watching", "ended",
)  # fmt: skip
SETTLES_VERSION = (KEPT, PROMOTED, WATCHING)  # the record's version is the serving one; else its ``against`` is
SERVED = "served"
COLD_START = "cold_start"


@dataclass(frozen=True)
class GuardConfig:
    judged_events: int = 20_000
    margin: float = 0.01
    confidence: float = 0.95

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> GuardConfig:
        base = {
            "judged_events": settings.guard_judged_events,
            "margin": settings.guard_margin,
            "confidence": settings.guard_confidence,
        }
        return cls(**given(base, overrides))


@dataclass(frozen=True)
class Comparison:
    """Live HR@K of ``newer`` against ``older`` over ``n`` judged events (paired) or the smaller arm (canary)."""

    newer: str
    older: str
    test: str  # paired (shadow) or unpaired (canary)
    n: int
    hr_newer: float
    hr_older: float
    lower: float  # one-sided bounds on hr_newer - hr_older
    upper: float

    @property
    def diff(self) -> float:
        return self.hr_newer - self.hr_older

    def not_worse(self, margin: float) -> bool:
        return self.lower >= -margin

    def describe(self) -> str:
        return (
            f"HR {self.hr_newer:.4f} ({self.newer}) vs {self.hr_older:.4f} ({self.older}) over {self.n} events, "
            f"difference {self.diff:+.4f}, bounds [{self.lower:+.4f}, {self.upper:+.4f}] ({self.test})"
        )


def _z(confidence: float) -> float:
    return statistics.NormalDist().inv_cdf(confidence)


def paired_bounds(n: int, newer_only: int, older_only: int, confidence: float) -> tuple[float, float]:
    """One-sided bounds on the paired difference of hit rates (Agresti-Min: 1/2 added to each cell)."""
    b, c, m = newer_only + 0.5, older_only + 0.5, n + 2.0
    d = (b - c) / m
    se = math.sqrt(max((b + c) - (b - c) ** 2 / m, 0.0)) / m
    z = _z(confidence)
    return d - z * se, d + z * se


def unpaired_bounds(n1: int, hits1: int, n2: int, hits2: int, confidence: float) -> tuple[float, float]:
    """One-sided bounds on p1 - p2 of two independent arms (Agresti-Caffo: one hit, one miss added to each)."""
    p1, p2 = (hits1 + 1) / (n1 + 2), (hits2 + 1) / (n2 + 2)
    se = math.sqrt(p1 * (1 - p1) / (n1 + 2) + p2 * (1 - p2) / (n2 + 2))
    d, z = p1 - p2, _z(confidence)
    return d - z * se, d + z * se


class LiveFigures:
    """The online-metrics records read so far (exact counts; windows of every worker add up)."""

    def __init__(self, records: Iterable[OnlineMetrics] = ()) -> None:
        self.records: list[OnlineMetrics] = list(records)

    def add(self, records: Iterable[OnlineMetrics]) -> None:
        self.records.extend(records)

    def by_version(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(version, exposure) -> (judged, hits) over every record."""
        out: dict[tuple[str, str], list[int]] = {}
        for r in self.records:
            for c in r.judged:
                row = out.setdefault((c.model_version, c.exposure), [0, 0])
                row[0] += c.judged
                row[1] += c.hits
        return {key: (judged, hits) for key, (judged, hits) in sorted(out.items())}

    def trial(self, trial: Any, confidence: float) -> Comparison | None:
        """The figures of ``trial`` (a registry ``Trial``) since it opened, the newer model first: the
        challenger of a challenge, CURRENT for a watch. None before any event judged both."""
        mine = [
            r for r in self.records
            if r.champion == trial.champion and r.challenger == trial.version and r.trial_mode == trial.mode
            and r.window_start >= trial.opened_at
        ]  # fmt: skip
        watch = trial.purpose == "watch"
        newer, older = (trial.champion, trial.version) if watch else (trial.version, trial.champion)
        if trial.mode == "canary":
            arms: dict[str, list[int]] = {trial.champion: [0, 0], trial.version: [0, 0]}
            for r in mine:
                for c in r.judged:
                    if c.exposure == SERVED and c.cohort != COLD_START and c.model_version in arms:
                        arms[c.model_version][0] += c.judged
                        arms[c.model_version][1] += c.hits
            (n1, h1), (n2, h2) = arms[newer], arms[older]
            if not n1 or not n2:
                return None
            lower, upper = unpaired_bounds(n1, h1, n2, h2, confidence)
            n = arms[trial.version][0]  # the challenger's served lists
            return Comparison(newer, older, "unpaired", n, h1 / n1, h2 / n2, lower, upper)
        n = both = champion_only = challenger_only = 0
        for r in mine:
            for p in r.paired:
                if (p.champion, p.challenger) == (trial.champion, trial.version):
                    n, both = n + p.judged, both + p.both_hit
                    champion_only += p.champion_only
                    challenger_only += p.challenger_only
        if not n:
            return None
        newer_only, older_only = (champion_only, challenger_only) if watch else (challenger_only, champion_only)
        lower, upper = paired_bounds(n, newer_only, older_only, confidence)
        return Comparison(newer, older, "paired", n, (both + newer_only) / n, (both + older_only) / n, lower, upper)


class OnlineMetricsFeed:
    """Reads ``<prefix>.online-metrics`` from the beginning, then what arrived since the last read."""

    def __init__(self, settings: Settings) -> None:
        from stream_app.finetune.kafka import RetryPolicy, TopicReader

        self._reader = TopicReader(settings, topics.ONLINE_METRICS, RetryPolicy.from_settings(settings))
        self._next: dict[int, int] = {}

    def read(self) -> list[OnlineMetrics]:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        partitions = self._reader.partitions()
        start = [TopicPartition(self._reader.topic, p, self._next.get(p, OFFSET_BEGINNING)) for p in partitions]
        out = []
        for msg in self._reader.messages(start):
            self._next[msg.partition()] = msg.offset() + 1
            try:
                out.append(msgspec.json.decode(msg.value(), type=OnlineMetrics))
            except (msgspec.DecodeError, TypeError):
                log.warning("online-metrics record at offset %d is not one; skipped", msg.offset())
        return out

    def close(self) -> None:
        self._reader.close()


@dataclass
class GuardRecord:
    """One decision of the guard, with the figures it was taken on."""

    at: str  # ISO 8601, UTC
    action: str  # promoted, rejected, kept, rolled_back, watching, ended
    version: str  # the model decided on: the challenger, or the promoted model a watch judged
    against: str | None  # the model it was compared with
    reason: str
    mode: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{self.action.upper()} {self.version}"
            + (f" (against {self.against})" if self.against else "")
            + (f": {self.reason}")
        )


def guard_dir(registry_root: str | Path) -> Path:
    return Path(registry_root) / GUARD_DIR


def read_records(registry_root: str | Path) -> list[GuardRecord]:
    """Every decision, oldest first; unreadable files are skipped (a record is advisory, never state)."""
    out = []
    for path in sorted(guard_dir(registry_root).glob("*.json")):
        try:
            out.append(GuardRecord(**json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, TypeError):
            continue
    return out


def _write(registry_root: Path, record: GuardRecord) -> GuardRecord:
    from export.registry import write_atomic

    folder = guard_dir(registry_root)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    name = f"{now:%Y%m%dT%H%M%S}{now.microsecond:06d}Z-{record.action}-{record.version}.json"
    write_atomic(folder / name, json.dumps(asdict(record), indent=2).encode() + b"\n")
    log.info("guard: %s", record.summary())
    return record


class Guard:
    """``registry``: an ``export.registry.Registry``; ``figures``: what the online-metrics topic held so far."""

    def __init__(self, registry: Any, config: GuardConfig) -> None:
        self.registry = registry
        self.config = config

    def _record(self, action: str, version: str, against: str | None, reason: str, mode: str | None = None,
                comparison: Comparison | None = None) -> GuardRecord:  # fmt: skip
        figures: dict[str, Any] = {"margin": self.config.margin, "confidence": self.config.confidence,
                                   "judged_events": self.config.judged_events}  # fmt: skip
        if comparison is not None:
            figures.update({**asdict(comparison), "diff": comparison.diff})
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        return _write(self.registry.root, GuardRecord(at, action, version, against, reason, mode, figures))

    def step(self, figures: LiveFigures) -> GuardRecord | None:
        """One look at the registry and the figures: the decision taken, if any."""
        current, trial = self.registry.current(), self.registry.trial()
        if trial is not None and trial.champion != current:
            self.registry.close_trial(trial.version)
            return self._record(ENDED, trial.version, trial.champion, f"CURRENT moved to {current}", trial.mode)
        if trial is None:
            return self._watch_if_unjudged(current)
        comparison = figures.trial(trial, self.config.confidence)
        if comparison is None or comparison.n < self.config.judged_events:
            return None
        ok = comparison.not_worse(self.config.margin)
        verdict = (
            f"{comparison.describe()}; {'not worse' if ok else 'not shown not worse'} than by the margin "
            f"{self.config.margin} at {self.config.confidence:.0%}"
        )
        if trial.purpose == "watch":
            if ok:
                self.registry.close_trial(trial.version)
                return self._record(KEPT, current, trial.version, verdict, trial.mode, comparison)
            back = self.registry.rollback(if_current=current)
            self.registry.close_trial(trial.version)
            return self._record(ROLLED_BACK, current, back, verdict, trial.mode, comparison)
        if not ok:
            self.registry.close_trial(trial.version)
            return self._record(REJECTED, trial.version, current, verdict, trial.mode, comparison)
        self.registry.promote(trial.version, if_current=current)
        self.registry.open_trial(current, "shadow", purpose="watch", if_current=trial.version)
        return self._record(PROMOTED, trial.version, current, verdict, trial.mode, comparison)

    def _watch_if_unjudged(self, current: str | None) -> GuardRecord | None:
        """Watch CURRENT beside the version it replaced, unless the guard's latest record about CURRENT
        settled it as the serving model (kept, restored by a rollback, defended against a challenger, or
        promoted by the guard or watched already: a watch an operator ended is not reopened)."""
        history = self.registry.history()
        if current is None or len(history) < 2:
            return None
        records = read_records(self.registry.root)
        latest = next((r for r in reversed(records) if current in (r.version, r.against) and r.action != ENDED), None)
        if latest is not None and current == (latest.version if latest.action in SETTLES_VERSION else latest.against):
            return None
        self.registry.open_trial(history[1], "shadow", purpose="watch", if_current=current)
        reason = "CURRENT was promoted: the version it replaced runs beside it in shadow"
        return self._record(WATCHING, current, history[1], reason)


def run_guard(
    settings: Settings,
    registry: Any,
    config: GuardConfig,
    poll_s: float,
    *,
    until: Callable[[GuardRecord], bool] = lambda record: False,
    steps: int | None = None,
    on_record: Callable[[GuardRecord], None] = lambda record: None,
) -> None:
    """Look every ``poll_s`` seconds until ``until(record)`` holds or ``steps`` looks were taken."""
    feed, figures, guard = OnlineMetricsFeed(settings), LiveFigures(), Guard(registry, config)
    try:
        done = 0
        while steps is None or done < steps:
            figures.add(feed.read())
            try:
                record = guard.step(figures)
            except InterestStreamError as exc:  # e.g. CURRENT moved under it, a bundle refused: look again
                if steps is not None:
                    raise
                log.error("guard: %s", exc)
                record = None
            done += 1
            if record is not None:
                on_record(record)
                if until(record):
                    return
                continue  # look again at once: a promotion opens a watch
            if steps is None or done < steps:
                time.sleep(poll_s)
    finally:
        feed.close()
