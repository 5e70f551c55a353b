"""The model a benchmark serves: a registry given by the user, or one built once per run dir.

The built one is trained briefly (one epoch) on the interactions the benchmark replays, through
the real `istream convert/generate`, `train`, `export --int8` and `models publish/promote`
commands, so its catalog, item table and encoder are those of a real deployment. Speed does
not depend on how well it ranks, so one epoch is enough; the registry is reused by later runs.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import click

from stream_app.bench.workload import MOVIELENS
from stream_app.cli.common import istream_argv
from stream_app.exceptions import InterestStreamError


class BenchSetupError(InterestStreamError):
    """A step that prepares the benchmark failed."""


def run_istream(*args: object) -> None:
    words = [str(a) for a in args]
    click.echo(f"$ istream {' '.join(words)}", err=True)
    result = subprocess.run([*istream_argv(), *words], capture_output=True, text=True)
    if result.returncode != 0:
        raise BenchSetupError(f"`istream {' '.join(words)}` failed:\n{result.stderr.strip()[-3000:]}")


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
        run_istream(
            "convert",
            "movielens",
            "--ratings",
            movielens / "ratings.csv",
            "--movies",
            movielens / "movies.csv",
            *outputs,
        )
    else:
        run_istream("generate", "--users", 2000, "--items", 3000, "--events", 100_000, "--seed", 0, *outputs)
    checkpoint, bundle = work_dir / "checkpoint", work_dir / "bundle"
    run_istream("train", "--events", events, "--items", items, "--out", checkpoint, "--epochs", 1, "--quiet")
    run_istream("export", "--model", checkpoint, "--out", bundle, "--int8")
    run_istream("models", "publish", bundle, "--promote", "--registry", registry)
    return registry
