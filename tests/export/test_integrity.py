"""Every way a bundle is refused, checked on real exported bundles (copies, then tampered with)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from export.exceptions import (
    BundleError,
    IntegrityError,
    ManifestError,
    SignatureError,
    UnsafePathError,
)
from export.integrity import sign_bundle, verify_bundle
from export.manifest import MANIFEST, SIGNATURE
from export.runtime import RuntimeOptions, load_runtime

KEY = "test-signing-key"


def edit_manifest(bundle: Path, change: Callable[[dict], None]) -> None:
    manifest = json.loads((bundle / MANIFEST).read_text())
    change(manifest)
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=2))


def test_exported_bundle_verifies(tiny_bundle: Path) -> None:
    manifest = verify_bundle(tiny_bundle)
    assert "step.onnx" in manifest.files
    assert set(manifest.referenced_paths()) <= set(manifest.files)


def test_flipped_byte_is_refused(bundle_copy: Path) -> None:
    path = bundle_copy / "step.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, different content
    with pytest.raises(IntegrityError, match=r"step.onnx .* sha256"):
        verify_bundle(bundle_copy)


def test_wrong_sha_in_manifest_is_refused(bundle_copy: Path) -> None:
    edit_manifest(bundle_copy, lambda m: m["files"]["items.npy"].update(sha256="0" * 64))
    with pytest.raises(IntegrityError, match=r"items.npy"):
        verify_bundle(bundle_copy)


def test_wrong_size_is_refused(bundle_copy: Path) -> None:
    with (bundle_copy / "items.json").open("a") as f:
        f.write(" ")
    with pytest.raises(IntegrityError, match=r"items.json .* bytes"):
        verify_bundle(bundle_copy)


def test_missing_file_is_refused(bundle_copy: Path) -> None:
    (bundle_copy / "encoder.int8.onnx").unlink()
    with pytest.raises(IntegrityError, match=r"encoder.int8.onnx is missing"):
        verify_bundle(bundle_copy)


@pytest.mark.parametrize("path", ["../outside.onnx", "/etc/hostname", "tokenizer/../../x", "a\\b", "./step.onnx", ""])
def test_path_outside_the_bundle_is_refused(bundle_copy: Path, path: str) -> None:
    def point_step_at(m: dict) -> None:
        m["files"][path] = m["files"].pop("step.onnx")
        m["graphs"]["step"]["file"] = path

    edit_manifest(bundle_copy, point_step_at)
    with pytest.raises(UnsafePathError):
        verify_bundle(bundle_copy)


def test_symlink_escaping_the_bundle_is_refused(bundle_copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    tokenizer = bundle_copy / "tokenizer" / "tokenizer.json"
    outside.write_bytes(tokenizer.read_bytes())  # identical bytes: only the location is wrong
    tokenizer.unlink()
    tokenizer.symlink_to(outside)
    with pytest.raises(UnsafePathError, match="outside the bundle"):
        verify_bundle(bundle_copy)


def test_symlinked_manifest_outside_is_refused(bundle_copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "manifest.json"
    outside.write_bytes((bundle_copy / MANIFEST).read_bytes())
    (bundle_copy / MANIFEST).unlink()
    (bundle_copy / MANIFEST).symlink_to(outside)
    with pytest.raises(UnsafePathError):
        verify_bundle(bundle_copy)


def test_unlisted_reference_is_refused(bundle_copy: Path) -> None:
    edit_manifest(bundle_copy, lambda m: m["graphs"]["step"].update(file="other.onnx"))
    with pytest.raises(ManifestError, match=r"other.onnx"):
        verify_bundle(bundle_copy)


def test_missing_or_broken_manifest_is_refused(bundle_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist"):
        verify_bundle(tmp_path / "nothing-here")
    (bundle_copy / MANIFEST).write_text('{"format": 1, "name": "x"}')
    with pytest.raises(ManifestError, match="not a bundle manifest"):
        verify_bundle(bundle_copy)
    (bundle_copy / MANIFEST).unlink()
    with pytest.raises(ManifestError, match=r"no manifest.json"):
        verify_bundle(bundle_copy)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(format=3), r"manifest format 3, this version reads formats \(1, 2\); upgrade"),
        # a float16 table says so in the format, which older workers refuse with that message
        (lambda m: m["item_table"].update(dtype="float16"), r"float16 item table needs manifest format 2, not 1"),
        (lambda m: m.update(format=2), r"float32 item table needs manifest format 1, not 2"),
    ],
)
def test_manifest_format_and_item_table_dtype_must_agree(bundle_copy: Path, change, message: str) -> None:
    edit_manifest(bundle_copy, change)
    with pytest.raises(ManifestError, match=message):
        verify_bundle(bundle_copy)


def test_signature_checks(bundle_copy: Path) -> None:
    with pytest.raises(SignatureError, match="unsigned"):
        verify_bundle(bundle_copy, KEY)
    sign_bundle(bundle_copy, KEY)
    assert verify_bundle(bundle_copy, KEY).version
    assert verify_bundle(bundle_copy).version  # without a key, a signature is not required
    with pytest.raises(SignatureError, match="does not match"):
        verify_bundle(bundle_copy, "another-key")


def test_signature_covers_the_manifest(bundle_copy: Path) -> None:
    sign_bundle(bundle_copy, KEY)
    edit_manifest(bundle_copy, lambda m: m.update(parent_version="forged"))
    with pytest.raises(SignatureError):
        verify_bundle(bundle_copy, KEY)
    (bundle_copy / SIGNATURE).write_text("not hex\n")
    with pytest.raises(SignatureError):
        verify_bundle(bundle_copy, KEY)


def test_load_runtime_refuses_tampered_and_unsigned_bundles(bundle_copy: Path) -> None:
    with pytest.raises(SignatureError):
        load_runtime(bundle_copy, RuntimeOptions(signing_key=KEY))
    (bundle_copy / "item_tower.onnx").write_bytes(b"not onnx")
    with pytest.raises(IntegrityError):
        load_runtime(bundle_copy)


def test_graph_with_wrong_signature_is_refused(bundle_copy: Path) -> None:
    """A consistent manifest whose step entry points at another graph: files check out, IO does not."""
    edit_manifest(bundle_copy, lambda m: m["graphs"]["step"].update(file="item_tower.onnx"))
    with pytest.raises(ManifestError, match=r"step graph .* item_tower.onnx has"):
        load_runtime(bundle_copy)


def test_unloadable_onnx_is_refused(bundle_copy: Path) -> None:
    from export.integrity import file_entry

    (bundle_copy / "step.onnx").write_bytes(b"\x08\x07garbage")
    entry = file_entry(bundle_copy / "step.onnx")
    edit_manifest(bundle_copy, lambda m: m["files"]["step.onnx"].update(sha256=entry.sha256, size=entry.size))
    with pytest.raises(BundleError, match="does not load"):
        load_runtime(bundle_copy)
