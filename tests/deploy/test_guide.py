"""The operations guide: its sizing table is what deploy/sizing.py computes now; its links resolve."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.deploy import manifests as m
from tests.deploy.manifests import GUIDE


def test_guide_shows_the_computed_sizing_table() -> None:
    done = subprocess.run(
        [sys.executable, str(m.DEPLOY / "sizing.py")], capture_output=True, text=True, cwd=m.ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    guide = GUIDE.read_text(encoding="utf-8")
    stale = [line for line in done.stdout.splitlines() if line.strip() and line not in guide]
    assert not stale, f"deploy/README.md is out of date; paste `python deploy/sizing.py` output. Missing: {stale}"


def test_guide_links_resolve() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", guide):
        if "://" not in target:
            assert (GUIDE.parent / target).exists(), f"deploy/README.md links to missing {target}"
