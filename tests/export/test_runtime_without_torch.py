"""The worker runtime loads and runs a real bundle in a process where torch cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import json, sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
import numpy as np
from export.runtime import load_runtime
from export.registry import Registry

rt = load_runtime(sys.argv[1])
emb = rt.encode(["lovely warm tone", "", "strings " * 900])
vec = rt.item_vectors(emb)
out = rt.step(np.zeros((3, rt.state_dim)), rt.item_matrix[:3], np.array([0, 5, 2]), emb,
              np.ones(3), np.array([4.0, -1.0, 1.0]), np.array([0.0, 60.0, 1e5]))
try:
    import torch  # noqa: F401
    torch_blocked = False
except ImportError:
    torch_blocked = True
print(json.dumps({
    "torch_blocked": torch_blocked,
    "heavy": sorted(m for m in ("torch", "transformers", "onnx", "models") if sys.modules.get(m) is not None),
    "provider": rt.provider, "emb": list(emb.shape), "vec": list(vec.shape),
    "step": [list(x.shape) for x in out], "finite": bool(all(np.isfinite(x).all() for x in (emb, vec, *out))),
    "registry_versions": Registry(sys.argv[2]).versions(),
}))
"""


def test_runtime_runs_without_torch(tiny_bundle: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_bundle), str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["torch_blocked"] and result["heavy"] == []
    assert result["emb"] == [3, 32] and result["vec"] == [3, 32]
    assert result["step"] == [[3, 192], [3, 32], [3, 32], [3, 32]]  # two tiny members side by side
    assert result["finite"] and result["registry_versions"] == []
