"""Checking a bundle before anything loads it: paths, sizes, sha256 and the optional signature.

The signature is HMAC-SHA256 over the exact bytes of manifest.json, stored as hex in
manifest.sig; since the manifest pins every file's sha256, it covers the whole bundle.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path, PurePosixPath

from export.exceptions import IntegrityError, ManifestError, SignatureError, UnsafePathError
from export.manifest import MANIFEST, SIGNATURE, FileEntry, Manifest, decode_manifest


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_entry(path: Path) -> FileEntry:
    return FileEntry(sha256=sha256_file(path), size=path.stat().st_size)


def member_path(root: Path, relative: str) -> Path:
    """``root / relative``, refusing any path that could leave ``root`` (absolute, ``..``, symlinks)."""
    pure = PurePosixPath(relative)
    if not relative or pure.is_absolute() or "\\" in relative or ".." in pure.parts or relative != pure.as_posix():
        raise UnsafePathError(f"bundle path {relative!r} is not a plain relative path inside the bundle; re-export it")
    path = root / pure
    if not path.resolve().is_relative_to(root.resolve()):
        raise UnsafePathError(f"bundle path {relative!r} resolves outside the bundle ({path.resolve()}); re-export it")
    return path


def signature(manifest_bytes: bytes, key: str | bytes) -> str:
    key_bytes = key.encode() if isinstance(key, str) else key
    return hmac.new(key_bytes, manifest_bytes, hashlib.sha256).hexdigest()


def sign_bundle(bundle_dir: str | os.PathLike, key: str | bytes) -> None:
    root = Path(bundle_dir)
    (root / SIGNATURE).write_text(signature((root / MANIFEST).read_bytes(), key) + "\n", encoding="ascii")


def read_manifest_bytes(root: Path) -> bytes:
    path = member_path(root, MANIFEST)
    if not path.is_file():
        raise ManifestError(f"{root} has no {MANIFEST}; is it a bundle written by `istream export`?")
    return path.read_bytes()


def check_signature(root: Path, manifest_bytes: bytes, key: str | bytes) -> None:
    sig_path = member_path(root, SIGNATURE)
    if not sig_path.is_file():
        raise SignatureError(
            f"{root} is unsigned but a signing key is configured; sign it with `istream export` "
            "under the same ISTREAM_BUNDLE_SIGNING_KEY"
        )
    found = sig_path.read_text(encoding="ascii", errors="replace").strip()
    if not hmac.compare_digest(found, signature(manifest_bytes, key)):
        raise SignatureError(f"{root / SIGNATURE} does not match the manifest under the configured signing key")


def verify_bundle(bundle_dir: str | os.PathLike, signing_key: str | bytes | None = None) -> Manifest:
    """The bundle's manifest, once every file checks out; raises a ``BundleError`` otherwise."""
    root = Path(bundle_dir)
    if not root.is_dir():
        raise ManifestError(f"bundle directory {root} does not exist")
    raw = read_manifest_bytes(root)
    if signing_key:
        check_signature(root, raw, signing_key)
    manifest = decode_manifest(raw, root / MANIFEST)
    unlisted = sorted(set(manifest.referenced_paths()) - set(manifest.files))
    if unlisted:
        raise ManifestError(f"{root / MANIFEST} refers to files it does not list with a sha256: {unlisted}")
    for relative, expected in manifest.files.items():
        path = member_path(root, relative)
        if not path.is_file():
            raise IntegrityError(f"{relative} is missing from bundle {root}; re-publish the bundle")
        size = path.stat().st_size
        if size != expected.size:
            raise IntegrityError(f"{relative} in {root} has {size} bytes, the manifest says {expected.size}")
        digest = sha256_file(path)
        if not hmac.compare_digest(digest, expected.sha256):
            raise IntegrityError(f"{relative} in {root} has sha256 {digest}, the manifest says {expected.sha256}")
    return manifest
