"""Registry: publish, promote, rollback and their refusals, on real exported bundles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from export.bundle import export_bundle
from export.exceptions import IntegrityError, RegistryError, SignatureError
from export.integrity import sign_bundle
from export.manifest import MANIFEST
from export.registry import CURRENT, Registry


@pytest.fixture(scope="module")
def second_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, tiny_bundle: Path) -> Path:
    out = tmp_path_factory.mktemp("second") / "bundle"
    parent = json.loads((tiny_bundle / MANIFEST).read_text())["version"]
    export_bundle(tiny_checkpoint, out, parent_version=parent)
    return out


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".") and p.name != ".lock")


def test_publish_promote_rollback(tmp_path: Path, tiny_bundle: Path, second_bundle: Path) -> None:
    registry = Registry(tmp_path / "registry")
    assert registry.versions() == [] and registry.current() is None
    first = registry.publish(tiny_bundle)
    second = registry.publish(second_bundle)
    assert registry.versions() == sorted([first, second])
    assert registry.current() is None  # publishing does not promote
    assert registry.manifest(second).parent_version == first

    registry.promote(first)
    registry.promote(second)
    assert registry.current() == second
    assert registry.history() == [second, first]
    assert (registry.root / CURRENT).read_text().splitlines()[0] == second

    assert registry.rollback() == first
    assert registry.current() == first
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback()
    assert registry.current() == first
    assert leftovers(registry.root) == []  # no temp files or half-copied bundles


def test_promoting_again_moves_a_version_to_the_front(tmp_path: Path, tiny_bundle: Path, second_bundle: Path) -> None:
    registry = Registry(tmp_path / "registry")
    first, second = registry.publish(tiny_bundle), registry.publish(second_bundle)
    for version in (first, second, first):
        registry.promote(version)
    assert registry.history() == [first, second]
    assert registry.rollback() == second


def test_published_bundle_is_a_complete_copy(tmp_path: Path, tiny_bundle: Path) -> None:
    registry = Registry(tmp_path / "registry")
    version = registry.publish(tiny_bundle)
    path = registry.bundle_path(version)
    copied = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    original = sorted(p.relative_to(tiny_bundle).as_posix() for p in tiny_bundle.rglob("*") if p.is_file())
    assert copied == original
    assert registry.verify(version).version == version
    assert registry.publish(tiny_bundle) == version  # publishing the same bundle twice is a no-op


def test_publish_refuses_a_bad_bundle_and_leaves_nothing(tmp_path: Path, bundle_copy: Path) -> None:
    (bundle_copy / "items.npy").write_bytes(b"tampered")
    registry = Registry(tmp_path / "registry")
    with pytest.raises(IntegrityError):
        registry.publish(bundle_copy)
    assert registry.versions() == []
    assert not (tmp_path / "registry").exists() or leftovers(tmp_path / "registry") == []


def test_same_version_with_other_contents_is_refused(tmp_path: Path, tiny_bundle: Path, bundle_copy: Path) -> None:
    registry = Registry(tmp_path / "registry")
    registry.publish(tiny_bundle)
    manifest = json.loads((bundle_copy / MANIFEST).read_text())
    manifest["metrics"] = {"hr@10": 0.99}
    (bundle_copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(RegistryError, match="already exists"):
        registry.publish(bundle_copy)


def test_promote_refuses_unknown_and_tampered_versions(tmp_path: Path, tiny_bundle: Path, second_bundle: Path) -> None:
    registry = Registry(tmp_path / "registry")
    first, second = registry.publish(tiny_bundle), registry.publish(second_bundle)
    registry.promote(first)
    for bad in ("no-such-version", "../escape", ""):
        with pytest.raises(RegistryError):
            registry.promote(bad)
    (registry.bundle_path(second) / "step.onnx").write_bytes(b"corrupted after publishing")
    with pytest.raises(IntegrityError):
        registry.promote(second)
    assert registry.current() == first


def test_rollback_refuses_a_tampered_target(tmp_path: Path, tiny_bundle: Path, second_bundle: Path) -> None:
    registry = Registry(tmp_path / "registry")
    first, second = registry.publish(tiny_bundle), registry.publish(second_bundle)
    registry.promote(first)
    registry.promote(second)
    shutil.rmtree(registry.bundle_path(first) / "tokenizer")
    with pytest.raises(IntegrityError):
        registry.rollback()
    assert registry.current() == second


def test_signing_key_refuses_unsigned_bundles(tmp_path: Path, tiny_bundle: Path, bundle_copy: Path) -> None:
    registry = Registry(tmp_path / "registry", signing_key="k1")
    with pytest.raises(SignatureError):
        registry.publish(tiny_bundle)
    sign_bundle(bundle_copy, "k1")
    version = registry.publish(bundle_copy)
    registry.promote(version)
    assert registry.current() == version
    with pytest.raises(SignatureError):
        Registry(registry.root, signing_key="k2").promote(version)


def test_conditional_promote(tmp_path: Path, tiny_bundle: Path, second_bundle: Path) -> None:
    registry = Registry(tmp_path / "registry")
    first, second = registry.publish(tiny_bundle), registry.publish(second_bundle)
    registry.promote(first)
    with pytest.raises(RegistryError, match=f"CURRENT is {first}"):
        registry.promote(second, if_current="some-other-version")
    assert registry.current() == first
    registry.promote(second, if_current=first)
    assert registry.history() == [second, first]
    with pytest.raises(RegistryError, match=f"CURRENT is {second}"):
        registry.rollback(if_current=first)
    assert registry.rollback(if_current=second) == first


def test_a_trial_runs_a_verified_version_beside_current_until_it_ends(
    tmp_path: Path, tiny_bundle: Path, second_bundle: Path
) -> None:
    registry = Registry(tmp_path / "registry")
    first, second = registry.publish(tiny_bundle), registry.publish(second_bundle)
    registry.promote(first)
    assert registry.trial() is None and registry.close_trial() is None
    shadow = registry.open_trial(second)
    assert registry.trial() == shadow and (shadow.mode, shadow.share, shadow.champion) == ("shadow", 0.0, first)
    assert shadow.purpose == "challenge" and shadow.opened_at > 0
    canary = registry.open_trial(second, "canary", 0.25, if_current=first)  # replaces the open one
    assert (
        registry.trial() == canary
        and canary.describe() == f"{second} (canary for 25% of users, challenge, beside {first})"
    )
    for bad, says in (
        (lambda: registry.open_trial(first), "CURRENT already"),
        (lambda: registry.open_trial(second, "canary", 0.0), "share of users"),
        (lambda: registry.open_trial(second, "shadow", 0.5), "share of users"),
        (lambda: registry.open_trial(second, "mirror"), "shadow or canary"),
        (lambda: registry.open_trial(second, if_current=second), f"CURRENT is {first}"),
        (lambda: registry.open_trial("nope"), "not in registry"),
    ):
        with pytest.raises(RegistryError, match=says):
            bad()
    assert registry.trial() == canary and registry.current() == first  # a refused trial changes nothing
    assert registry.close_trial("some-other-version") is None and registry.trial() == canary
    assert registry.close_trial(second) == canary and registry.trial() is None
    assert leftovers(registry.root) == []


def test_a_tampered_version_never_opens_a_trial_and_a_bad_trial_file_is_an_error(
    tmp_path: Path, tiny_bundle: Path, second_bundle: Path
) -> None:
    registry = Registry(tmp_path / "registry")
    first, second = registry.publish(tiny_bundle), registry.publish(second_bundle)
    registry.promote(first)
    (registry.bundle_path(second) / "step.onnx").write_bytes(b"corrupted after publishing")
    with pytest.raises(IntegrityError):
        registry.open_trial(second)
    assert registry.trial() is None
    for text in ("{not json", '{"version": "v1", "mode": "canary", "share": "half"}', '{"version": 5}', "[]"):
        (registry.root / "TRIAL").write_text(text)
        with pytest.raises(RegistryError, match="is not a trial"):
            registry.trial()
