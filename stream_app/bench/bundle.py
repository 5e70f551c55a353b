"""The model a benchmark serves: a registry given by the user, or one built once per run dir.

The built one is trained briefly (one epoch) on the interactions the benchmark replays, through
the real `istream convert/generate`, `train`, `export --int8` and `models publish/promote`
commands, so its catalog, item table and encoder are those of a real deployment. Speed does
not depend on how well it ranks, so one epoch is enough; the registry is reused by later runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from stream_app.bench.workload import MOVIELENS
from stream_app.cli.common import run_istream
from stream_app.exceptions import InterestStreamError


class BenchSetupError(InterestStreamError):
    """A step that prepares the benchmark failed."""


def setup_istream(*args: object) -> str:
    """``run_istream`` with the command lines on stderr: stdout carries the benchmark's report."""
    return run_istream(*args, echo=sys.stderr)


def ensure_registry(registry: Path | None, work_dir: Path, data_dir: Path) -> Path:
    """``registry`` when given (it must have a CURRENT version), else the run dir's bench registry."""
    if registry is not None:
        if not (registry / "CURRENT").is_file():
            raise BenchSetupError(f"registry {registry} has no CURRENT version; publish and promote a bundle first")
        return registry
    registry = work_dir / "registry"
    if (registry / "CURRENT").is_file():
        return registry
    data = work_dir / "train-data"
    data.mkdir(parents=True, exist_ok=True)
    events, items = data / "events.jsonl", data / "items.jsonl"
    movielens = data_dir / MOVIELENS
    outputs = ("--out-events", events, "--out-items", items)
    if (movielens / "ratings.csv").is_file():
        setup_istream(
            "convert",
            "movielens",
            "--ratings",
            movielens / "ratings.csv",
            "--movies",
            movielens / "movies.csv",
            *outputs,
        )
    else:
        setup_istream("generate", "--users", 2000, "--items", 3000, "--events", 100_000, "--seed", 0, *outputs)
    checkpoint, bundle = work_dir / "checkpoint", work_dir / "bundle"
    setup_istream("train", "--events", events, "--items", items, "--out", checkpoint, "--epochs", 1, "--quiet")
    setup_istream("export", "--model", checkpoint, "--out", bundle, "--int8")
    setup_istream("models", "publish", bundle, "--promote", "--registry", registry)
    return registry
