"""Print an image's pip requirements: the project's dependencies with ONNX Runtime chosen for the image.

pyproject.toml picks onnxruntime-gpu on Linux x86_64 (the dev machines). A CPU image wants plain
onnxruntime instead (no CUDA libraries, a fraction of the size) and a GPU image wants onnxruntime-gpu
pinned to the version its CUDA base image matches, so both come from here. The image installs these
requirements, then the project itself with ``pip install --no-deps .`` (so ``pip check`` in a CPU image
reports onnxruntime-gpu as missing: expected). Stdlib only: it runs before anything is installed.

    python deploy/docker/requirements.py --onnxruntime cpu --version 1.31.1 [--extra train]
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

ORT_PACKAGES = {"cpu": "onnxruntime", "gpu": "onnxruntime-gpu"}
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _normalized(requirement: str) -> str:
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"unreadable requirement {requirement!r} in pyproject.toml")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def requirements(pyproject: Path, onnxruntime: str, version: str, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    optional = project.get("optional-dependencies", {})
    unknown = sorted(set(extras) - set(optional))
    if unknown:
        raise ValueError(f"pyproject.toml has no extra {unknown}; it has {sorted(optional)}")
    wanted = list(project["dependencies"]) + [req for extra in extras for req in optional[extra]]
    kept = [req for req in wanted if _normalized(req) not in ORT_PACKAGES.values()]
    return [*dict.fromkeys(kept), f"{ORT_PACKAGES[onnxruntime]}=={version}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnxruntime", choices=sorted(ORT_PACKAGES), required=True)
    parser.add_argument("--version", required=True, help="ONNX Runtime version to pin")
    parser.add_argument("--extra", action="append", default=[], help="optional-dependency group to add")
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    args = parser.parse_args(argv)
    try:
        lines = requirements(args.pyproject, args.onnxruntime, args.version, args.extra)
    except (OSError, KeyError, ValueError) as exc:
        print(f"requirements.py: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
