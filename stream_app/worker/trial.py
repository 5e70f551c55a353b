"""The challenger: a second model run beside the serving one (the champion), as the registry's TRIAL says.

A trial runs in ``shadow`` (the challenger steps and ranks every event of the batch beside the
champion, its lists judged online, never emitted) or as a ``canary`` (users whose stable hash of
user_id falls under ``share`` get the challenger's outputs, the others the champion's; both models
still run for everyone, so either can take over with every state current). Promotion stays a registry
operation: a worker never moves CURRENT, it only reads CURRENT and TRIAL.

``TrialWatcher`` polls TRIAL every ISTREAM_MODEL_POLL_S, loads and verifies a new challenger in a
worker thread (the same checks as a swap: every sha256, the signature, a smoke inference), reuses a
model the worker holds already (the champion a promotion replaced, say), and hands the change over
between batches. A trial naming CURRENT is no trial. A challenger whose comment embeddings are not
as wide as the champion's is refused: the shadow steps on the champion's encodings of the batch's
comments and of the users' windows.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from stream_app.exceptions import InterestStreamError
from stream_app.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)


@lru_cache(maxsize=65_536)
def canary_bucket(user_id: str) -> float:
    """A user's place in [0, 1): a stable hash of the user id, independent of its partition."""
    digest = hashlib.blake2b(user_id.encode("utf-8", "surrogatepass"), digest_size=8, person=b"istream-canary")
    return int.from_bytes(digest.digest(), "little") / 2**64


@dataclass(frozen=True)
class Challenger:
    """The model run beside the champion: ``serving`` (a ``pipeline.Serving``), its mode and canary share."""

    serving: Any
    mode: str = "shadow"
    share: float = 0.0

    @property
    def version(self) -> str:
        return self.serving.runtime.version

    def serves(self, user_id: str) -> bool:
        """Whether the user's outputs are the challenger's (a canary user)."""
        return self.mode == "canary" and canary_bucket(user_id) < self.share


@dataclass(frozen=True)
class TrialChange:
    """What runs beside the champion from now on: a runtime in a mode, or nothing (``runtime`` None)."""

    runtime: Any | None
    mode: str = "shadow"
    share: float = 0.0


class TrialWatcher:
    """``registry`` is an ``export.registry.Registry``; ``load(bundle_dir)`` a verified runtime (as the
    swapper's); ``held(version)`` a runtime of that version the worker holds already, or None."""

    def __init__(
        self,
        registry: Any,
        load: Callable[[Path], Any],
        held: Callable[[str], Any | None],
        metrics: WorkerMetrics,
        poll_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._load = load
        self._held = held
        self._metrics = metrics
        self._poll_s = poll_s
        self._clock = clock
        self._next_poll = 0.0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="trial-verify")
        self._pending: tuple[str, Future] | None = None
        self._wanted: Any | None = None  # the registry's Trial beside the champion, when there is one
        self._running: tuple[str, str, float] | None = None  # (version, mode, share) handed over last
        self._champion: str | None = None
        self.refused: set[str] = set()

    def poll(self, champion: str, champion_text_dim: int) -> TrialChange | None:
        """Between batches: what to run beside ``champion`` from now on, when that changed (None: no change)."""
        now = self._clock()
        if now >= self._next_poll or champion != self._champion:
            self._next_poll = now + self._poll_s
            self._champion = champion
            try:
                trial = self._registry.trial()
            except (InterestStreamError, OSError) as exc:
                self._refuse("?", exc)
                trial = None
            self._wanted = trial if trial is not None and trial.version != champion else None
        wanted = self._wanted
        if wanted is None:
            if self._running is None:
                return None
            log.info("trial ended: nothing runs beside %s", champion)
            self._running = None
            return TrialChange(None)
        if self._running == (wanted.version, wanted.mode, wanted.share):
            return None
        if wanted.version in self.refused:
            return None
        runtime = self._held(wanted.version)
        if runtime is not None:  # running already (another mode or share), or held since it last ran
            return self._hand_over(runtime, wanted, champion_text_dim)
        if self._pending is None or self._pending[0] != wanted.version:
            try:
                bundle = self._registry.bundle_path(wanted.version)
            except (InterestStreamError, OSError) as exc:
                self._refuse(wanted.version, exc)
                return None
            log.info("trial %s: verifying %s", wanted.version, bundle)
            self._pending = (wanted.version, self._executor.submit(self._load, bundle))
            return None
        version, future = self._pending
        if not future.done():
            return None
        self._pending = None
        try:
            runtime = future.result()
        except Exception as exc:  # whatever verification raised, the champion runs alone
            self._refuse(version, exc)
            return None
        return self._hand_over(runtime, wanted, champion_text_dim)

    def _hand_over(self, runtime: Any, wanted: Any, champion_text_dim: int) -> TrialChange | None:
        if runtime.text_dim != champion_text_dim:
            self._refuse(
                wanted.version,
                InterestStreamError(f"its comment embeddings are {runtime.text_dim} wide, the champion's "
                                    f"{champion_text_dim}: a trial needs the champion's comment encoder"),
            )  # fmt: skip
            return None
        self._running = (wanted.version, wanted.mode, wanted.share)
        log.info("trial: %s runs beside %s (%s, share %.3g)", wanted.version, self._champion, wanted.mode, wanted.share)
        return TrialChange(runtime, wanted.mode, wanted.share)

    def _refuse(self, version: str, exc: BaseException) -> None:
        if version != "?":
            self.refused.add(version)
        log.error("trial refused: version=%s error=%s", version, exc)
        self._metrics.swap_refusals.labels("trial").inc()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
