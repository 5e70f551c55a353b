"""The model registry: a directory of verified bundles and a ``CURRENT`` pointer.

```
<root>/
  <version>/   one complete bundle per version
  CURRENT      the serving version on line 1, then the versions it replaced, newest first
  TRIAL        a version the workers run beside CURRENT (JSON, ``Trial``): in shadow (ranked, judged,
               never shown) or as a canary (it serves a share of the users); absent when none
  .lock        serialises writers (publish, promote, rollback, trials) across processes
```

A bundle is copied in under a hidden temporary name, verified there and renamed, so no partial
bundle ever sits under a version name. ``CURRENT`` is rewritten atomically (temp file, fsync,
``os.replace``, fsync of the folder): readers see the old pointer or the new one. Keeping the
rollback history in the same file keeps pointer and history consistent after a crash. ``TRIAL`` is
written the same way; promotion stays ``CURRENT``'s alone: a trial only says what runs beside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from export.exceptions import BundleError, RegistryError
from export.integrity import member_path, verify_bundle
from export.manifest import MANIFEST, SIGNATURE, Manifest, decode_manifest

if TYPE_CHECKING:
    from export.runtime import RuntimeOptions

CURRENT = "CURRENT"
TRIAL = "TRIAL"
TRIAL_MODES = ("shadow", "canary")
# challenge: a candidate the guard may promote; watch: the version a promotion replaced, kept beside it
# so the guard can roll the promotion back
TRIAL_PURPOSES = ("challenge", "watch")
LOCK = ".lock"
HISTORY_LIMIT = 50
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _copy_synced(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as fin, dst.open("wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
        fout.flush()
        os.fsync(fout.fileno())


@dataclass(frozen=True)
class Trial:
    """What runs beside CURRENT: ``version`` in ``mode`` (a canary serves ``share`` of the users)."""

    version: str
    mode: str = "shadow"
    share: float = 0.0
    champion: str | None = None  # CURRENT when the trial opened
    purpose: str = "challenge"
    opened_at: int = 0  # epoch ms

    def describe(self) -> str:
        how = f"canary for {self.share:.0%} of users" if self.mode == "canary" else "shadow"
        return f"{self.version} ({how}, {self.purpose}, beside {self.champion})"


class Registry:
    def __init__(self, root: str | os.PathLike, signing_key: str | None = None) -> None:
        self.root = Path(root)
        self.signing_key = signing_key

    # ---- reading ---------------------------------------------------------------------------
    def versions(self) -> list[str]:
        """Published versions, oldest first (version names start with their UTC creation time)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if VERSION_RE.match(p.name) and (p / MANIFEST).is_file())

    def bundle_path(self, version: str) -> Path:
        if not VERSION_RE.match(version):
            raise RegistryError(f"{version!r} is not a version name; see `istream models list`")
        path = self.root / version
        if not (path / MANIFEST).is_file():
            raise RegistryError(f"version {version} is not in registry {self.root}; see `istream models list`")
        return path

    def manifest(self, version: str) -> Manifest:
        """The version's manifest as published (not re-verified; use ``verify`` for that)."""
        path = self.bundle_path(version) / MANIFEST
        return decode_manifest(path.read_bytes(), path)

    def history(self) -> list[str]:
        """The serving version first, then the versions it replaced, newest first."""
        path = self.root / CURRENT
        if not path.is_file():
            return []
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def current(self) -> str | None:
        history = self.history()
        return history[0] if history else None

    def trial(self) -> Trial | None:
        """The open trial, None when there is none; ``RegistryError`` when ``TRIAL`` is unreadable."""
        path = self.root / TRIAL
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            trial = Trial(**json.loads(raw))
            _check_trial(trial)
        except (ValueError, TypeError) as exc:  # not JSON, other fields, values of other types
            raise RegistryError(f"{path} is not a trial ({exc}); end it with `istream models end-trial`") from None
        return trial

    def verify(self, version: str, options: RuntimeOptions | None = None) -> Manifest:
        """Every sha256 (and the signature when a key is set) plus a smoke inference of ``version``."""
        from export.runtime import RuntimeOptions, load_runtime

        options = replace(options or RuntimeOptions(), signing_key=self.signing_key)
        return load_runtime(self.bundle_path(version), options).manifest

    # ---- writing ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / LOCK).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def publish(self, bundle_dir: str | os.PathLike) -> str:
        """Copy a verified bundle in under its version; returns the version (not promoted)."""
        source = Path(bundle_dir)
        manifest = verify_bundle(source, self.signing_key)
        version = manifest.version
        if not VERSION_RE.match(version):
            raise BundleError(f"bundle {source} has an unusable version name {version!r}; re-export it")
        with self._locked():
            target = self.root / version
            if target.exists():
                if (target / MANIFEST).read_bytes() == (source / MANIFEST).read_bytes():
                    return version  # the same bundle again
                raise RegistryError(f"version {version} already exists in {self.root} with other contents")
            incoming = self.root / f".incoming-{version}-{uuid.uuid4().hex[:8]}"
            try:
                names = [MANIFEST, *([SIGNATURE] if (source / SIGNATURE).is_file() else []), *manifest.files]
                for name in names:
                    _copy_synced(member_path(source, name), incoming / name)
                verify_bundle(incoming, self.signing_key)
                os.rename(incoming, target)
                _fsync_dir(self.root)
            finally:
                shutil.rmtree(incoming, ignore_errors=True)
        return version

    def promote(self, version: str, options: RuntimeOptions | None = None, *, if_current: str | None = None) -> None:
        """Verify ``version`` (sha256, signature, smoke inference) and make it the serving one.

        With ``if_current``, only while CURRENT is still that version (checked under the writers'
        lock, so a job that trained against one version cannot replace an operator's newer choice).
        """
        self.verify(version, options)
        with self._locked():
            if if_current is not None and self.current() != if_current:
                raise RegistryError(
                    f"CURRENT is {self.current()}, not {if_current}; {version} was not promoted "
                    "(promote it with `istream models promote` if wanted)"
                )
            history = [version, *(v for v in self.history() if v != version)][:HISTORY_LIMIT]
            write_atomic(self.root / CURRENT, "\n".join(history).encode() + b"\n")

    def rollback(self, options: RuntimeOptions | None = None, *, if_current: str | None = None) -> str:
        """Serve the version before the current one again; returns it. With ``if_current``, only while
        CURRENT is still that version."""
        with self._locked():
            history = self.history()
            if if_current is not None and self.current() != if_current:
                raise RegistryError(f"CURRENT is {self.current()}, not {if_current}; nothing was rolled back")
            if len(history) < 2:
                raise RegistryError(f"registry {self.root} has no earlier version to roll back to")
            self.verify(history[1], options)
            write_atomic(self.root / CURRENT, "\n".join(history[1:]).encode() + b"\n")
        return history[1]

    def open_trial(
        self,
        version: str,
        mode: str = "shadow",
        share: float = 0.0,
        purpose: str = "challenge",
        options: RuntimeOptions | None = None,
        *,
        if_current: str | None = None,
    ) -> Trial:
        """Verify ``version`` (sha256, signature, smoke inference) and run it beside CURRENT (replacing any
        open trial). With ``if_current``, only while CURRENT is still that version."""
        self.verify(version, options)
        with self._locked():
            current = self.current()
            if if_current is not None and current != if_current:
                raise RegistryError(f"CURRENT is {current}, not {if_current}; no trial of {version} was opened")
            if version == current:
                raise RegistryError(f"{version} is CURRENT already; a trial runs another version beside it")
            trial = Trial(version, mode, share, current, purpose, int(time.time() * 1000))
            _check_trial(trial)
            write_atomic(self.root / TRIAL, json.dumps(asdict(trial)).encode() + b"\n")
        return trial

    def close_trial(self, version: str | None = None) -> Trial | None:
        """End the open trial (only if it runs ``version``, when given); the trial ended, or None."""
        with self._locked():
            trial = self.trial()
            if trial is None or (version is not None and trial.version != version):
                return None
            (self.root / TRIAL).unlink()
            _fsync_dir(self.root)
        return trial


def _check_trial(trial: Trial) -> None:
    if not VERSION_RE.match(trial.version):
        raise RegistryError(f"trial version {trial.version!r} is not a version name")
    if trial.mode not in TRIAL_MODES or trial.purpose not in TRIAL_PURPOSES:
        raise RegistryError(f"a trial is {' or '.join(TRIAL_MODES)}, for a {' or a '.join(TRIAL_PURPOSES)}")
    if not (0.0 < trial.share <= 1.0 if trial.mode == "canary" else trial.share == 0.0):
        raise RegistryError(f"a canary serves a share of users in (0, 1], a shadow none (share {trial.share})")
