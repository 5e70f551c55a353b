"""`istream export` and `istream models` as an operator runs them: real console command, real bundles."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from stream_app.cli.common import istream_argv


def istream(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ISTREAM_", "KAFKA_"))}
    return subprocess.run(
        [*istream_argv(), *map(str, args)], capture_output=True, text=True, timeout=180, env={**base, **(env or {})}
    )


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def refused(done: subprocess.CompletedProcess, message: str) -> None:
    assert done.returncode == 1, done.stdout
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_export_publish_promote_rollback(tiny_checkpoint: Path, tiny_bundle: Path, tmp_path: Path) -> None:
    key = {"ISTREAM_BUNDLE_SIGNING_KEY": "cli-key"}
    out = ok(istream("export", "--model", tiny_checkpoint, "--out", tmp_path / "b", "--int8", env=key))
    assert "signed: yes" in out and "int8 encoder cosine to fp32" in out
    refused(istream("export", "--model", tiny_checkpoint, "--out", tmp_path / "b"), "not empty")

    reg = ("--registry", tmp_path / "registry")
    signed = ok(istream("models", "publish", tmp_path / "b", "--promote", *reg, env=key)).split()[1]
    refused(istream("models", "publish", tiny_bundle, *reg, env=key), "unsigned")
    unsigned = ok(istream("models", "publish", tiny_bundle, *reg)).split()[1]

    listing = ok(istream("models", "list", *reg))
    assert f"* {signed}" in listing and f"  {unsigned}" in listing and "hr@10=0.125" in listing
    assert f'"version": "{signed}"' in ok(istream("models", "show", *reg))
    assert "signature ok" in ok(istream("models", "verify", *reg, env=key))

    assert f"CURRENT = {unsigned}" in ok(istream("models", "promote", unsigned, *reg))
    assert (tmp_path / "registry" / "CURRENT").read_text().split() == [unsigned, signed]
    assert f"CURRENT = {signed}" in ok(istream("models", "rollback", *reg))
    refused(istream("models", "rollback", *reg), "no earlier version")
    refused(istream("models", "promote", "nope", *reg), "not in registry")
    assert f"TRIAL = {unsigned} (canary for 20% of users" in ok(
        istream("models", "trial", unsigned, "--canary", "0.2", *reg)
    )
    listing = ok(istream("models", "list", *reg))
    assert (
        f"~ {unsigned}" in listing
        and f"trial: {unsigned} (canary for 20% of users, challenge, beside {signed})" in listing
    )
    refused(istream("models", "trial", signed, *reg), "CURRENT already")
    assert f"trial of {unsigned} ended" in ok(istream("models", "end-trial", *reg))

    (tmp_path / "registry" / signed / "items.npy").write_bytes(b"tampered")
    refused(istream("models", "verify", signed, *reg), "items.npy")


def test_models_commands_on_an_empty_registry(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    reg = ("--registry", tmp_path / "empty")
    assert "empty" in ok(istream("models", "list", *reg))
    done = istream("models", "verify", *reg)
    assert done.returncode == 2 and "no CURRENT version" in done.stderr
    # a folder that does not exist is a wrong path, not an empty registry
    refused(istream("models", "list", "--registry", tmp_path / "typo"), f"no registry at {tmp_path / 'typo'}")
