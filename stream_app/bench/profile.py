"""Sampling profiles of worker processes during a benchmark (py-spy, from the dev extra), and the
functions that take the most of them."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from stream_app.exceptions import ConfigError

OWN_CODE = ("stream_app/", "export/", "models/")


@contextlib.contextmanager
def py_spy(pids: list[int], out_dir: Path, rate: int = 200) -> Iterator[list[Path]]:
    """Collapsed-stack profiles (``<pid>.folded``) of ``pids`` while the block runs."""
    binary = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if binary is None:
        raise ConfigError("--profile needs py-spy (pip install py-spy, part of the dev extra)")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"worker-{pid}.folded" for pid in pids]
    spies = [
        subprocess.Popen(
            [
                binary,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid, path in zip(pids, paths, strict=True)
    ]
    try:
        yield paths
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait(60)


def frame_name(frame: str) -> str:
    """``function (package/file.py:12)`` -> ``package/file.py:function`` (py-spy gives paths from sys.path)."""
    function, sep, location = frame.rpartition(" (")
    if not sep:
        return frame
    return f"{location.rstrip(')').rpartition(':')[0]}:{function}"


def hot_functions(folded: Path, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Top functions by share of samples spent in them (``own``), and the project's functions by share
    of samples with them on the stack (``inclusive``)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in folded.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [frame_name(f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for name in set(frames):
            if name.startswith(OWN_CODE):  # around them the stack is the event loop and Faust's plumbing
                inclusive[name] += n
    if not total:
        return {"own": [], "inclusive": []}
    return {
        kind: [(name, n / total) for name, n in counts.most_common(top)]
        for kind, counts in (("own", own), ("inclusive", inclusive))
    }
