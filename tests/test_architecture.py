"""docs/architecture.md's import rules hold: they are import-linter contracts in pyproject.toml, so a
forbidden import (models/ -> stream_app/, the worker -> torch or models/, ...), direct, indirect or
inside a function, fails here with the chain of imports that breaks the rule."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def test_every_import_follows_the_contracts():
    done = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_architecture_md_states_every_contract_word_for_word():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    doc = " ".join((ROOT / "docs" / "architecture.md").read_text().split())
    missing = [c["name"] for c in contracts if c["name"] not in doc]
    assert len(contracts) >= 6 and not missing, f"docs/architecture.md does not state: {missing}"
