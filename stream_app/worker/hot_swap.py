"""Hot-swap: find new model versions, verify them off the hot path, hand them over between batches.

A worker serves exactly the registry's CURRENT version: the pointer is polled and acted on when it
changes (so a stale pointer never swaps a newer model back out). Messages on the model-updates
topic are notices, not commands: a notice makes the worker re-read CURRENT at once, and it is
refused (logged and counted in ``istream_model_refusals_total`` by reason) unless it names CURRENT
(``not_current``), its uri is that version's registry folder (``message``: also for a record that
does not decode) and its sha256 is that of the bundle's ``manifest.json`` (``sha256``; the manifest
holds every file's sha256). Anyone who can write the topic can at most make workers re-read the
registry. Loading verifies every sha256 (and the signature when a key is configured) and runs a
smoke inference in a worker thread; a bundle that fails is refused (``verification``), and the
serving model stays. A version the worker holds already (the challenger a promotion makes CURRENT,
``trial``) is swapped in without loading it again.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from export.manifest import MANIFEST  # an update message's sha256 is the digest of this file
from stream_app.contracts import ContractError, decode_model_update
from stream_app.exceptions import InterestStreamError
from stream_app.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)


class RefusedUpdate(InterestStreamError):
    """A model-update message does not describe the registry's CURRENT bundle."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _path_of(uri: str) -> Path:
    return Path(uri.removeprefix("file://")).expanduser().resolve()


class ModelSwapper:
    """``registry`` is an ``export.registry.Registry``; ``load(bundle_dir)`` returns a verified runtime
    or raises (``export.runtime.load_runtime`` with the worker's options)."""

    def __init__(
        self,
        registry: Any,
        root: Path,
        load: Callable[[Path], Any],
        metrics: WorkerMetrics,
        poll_s: float,
        clock: Callable[[], float] = time.monotonic,
        held: Callable[[str], Any | None] = lambda version: None,
    ) -> None:
        self._registry = registry
        self._held = held
        self._root = root.resolve()
        self._load = load
        self._metrics = metrics
        self._poll_s = poll_s
        self._clock = clock
        self._next_poll = 0.0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="model-verify")
        self._pending: tuple[str, Future] | None = None
        self._current_seen: str | None = None
        self.serving_version: str | None = None
        self.refused: set[str] = set()

    @property
    def pending(self) -> str | None:
        """The version being verified, if any."""
        return self._pending[0] if self._pending is not None else None

    def load_current(self) -> Any:
        """The runtime of CURRENT, loaded now (start-up)."""
        version = self._registry.current()
        if version is None:
            raise InterestStreamError(
                f"the model registry {self._root} has no CURRENT version; export and publish a model first"
            )
        self._current_seen = version
        runtime = self._load(self._bundle_dir(version))
        self.serving_version = runtime.version
        return runtime

    def _bundle_dir(self, version: str) -> Path:
        path = Path(self._registry.bundle_path(version)).resolve()
        if not path.is_relative_to(self._root):
            raise RefusedUpdate(
                "registry", f"version {version!r} resolves to {path}, outside the registry {self._root}"
            )
        return path

    def notice_update(self, raw: bytes | None) -> None:
        """A record from the model-updates topic: re-read CURRENT now; refuse the record unless it describes it."""
        self._next_poll = 0.0
        try:
            update = decode_model_update(raw)
        except ContractError as exc:
            self._refuse("message", repr(raw)[:200], exc)
            return
        try:
            current = self._registry.current()
            if update.version != current:
                raise RefusedUpdate(
                    "not_current", f"it names {update.version!r}, the registry's CURRENT is {current!r}; "
                    "workers serve CURRENT only (promote a version with `istream models promote`)"
                )  # fmt: skip
            bundle = self._bundle_dir(current)
            if update.uri and _path_of(update.uri) != bundle:
                raise RefusedUpdate("message", f"uri {update.uri!r} is not the registry's folder {bundle} of it")
            digest = hashlib.sha256((bundle / MANIFEST).read_bytes()).hexdigest()
            if digest != update.sha256:
                raise RefusedUpdate("sha256", f"sha256 {update.sha256} is not that of {bundle / MANIFEST} ({digest})")
        except RefusedUpdate as exc:
            self._refuse(exc.reason, update.version, exc)
        except (InterestStreamError, OSError, ValueError) as exc:
            self._refuse("registry", update.version, exc)

    def _request(self, version: str, bundle: Path) -> None:
        if version == self.serving_version or version in self.refused:
            return
        if self._pending is not None and self._pending[0] == version:
            return
        runtime = self._held(version)
        if runtime is not None:  # verified when it was loaded; a registry version never changes
            future: Future = Future()
            future.set_result(runtime)
            self._pending = (version, future)
            return
        log.info("model %s: verifying %s", version, bundle)
        self._pending = (version, self._executor.submit(self._load, bundle))

    def reject(self, version: str, exc: BaseException, serving_version: str) -> None:
        """A verified runtime that could not be put to serve (``serving_version`` still serves): refused like
        one that failed verification."""
        self.refused.add(version)
        self.serving_version = serving_version
        self._refuse("verification", version, exc)

    def _refuse(self, reason: str, version: str, exc: BaseException) -> None:
        log.error("model update refused: reason=%s version=%s error=%s", reason, version, exc)  # one line each
        self._metrics.swap_refusals.labels(reason).inc()

    def poll(self) -> Any | None:
        """Between batches: the verified runtime to swap in now, if one is ready."""
        now = self._clock()
        if now >= self._next_poll:
            self._next_poll = now + self._poll_s
            try:
                current = self._registry.current()
                if current is not None and current != self._current_seen:
                    self._current_seen = current
                    self._request(current, self._bundle_dir(current))
            except (InterestStreamError, OSError) as exc:
                self._refuse("registry", str(self._current_seen), exc)
        if self._pending is None or not self._pending[1].done():
            return None
        version, future = self._pending
        self._pending = None
        try:
            runtime = future.result()
        except Exception as exc:  # whatever verification raised, the serving model stays
            self.refused.add(version)
            self._refuse("verification", version, exc)
            return None
        self.serving_version = runtime.version
        self._metrics.swaps.inc()
        log.info("model swap: version=%s provider=%s", runtime.version, getattr(runtime, "provider", "?"))
        return runtime

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
