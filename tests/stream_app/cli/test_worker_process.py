"""The worker child process wrapper the demo, benches and tests start workers with."""

from __future__ import annotations

import sys

import pytest

from stream_app.cli.worker_process import WorkerProcess, WorkerProcessError
from stream_app.settings import Settings

# a stand-in child is enough here: what is tested is how the wrapper reads the log it shares with earlier runs
CHILD = [sys.executable, "-c", "import time; print('this run is up', flush=True); time.sleep(30)"]


def test_an_earlier_runs_lines_in_the_log_do_not_pass_for_this_workers(tmp_path):
    log = tmp_path / "worker.log"
    log.write_text("an earlier run: serving model: version=old\nworker ready\n")
    worker = WorkerProcess(Settings(), tmp_path / "registry", tmp_path / "state", log, argv=CHILD)
    try:
        worker.wait_for("this run is up", timeout=20)
        assert "version=old" not in worker.output()
        with pytest.raises(WorkerProcessError, match="did not log 'worker ready'"):
            worker.wait_for("worker ready", timeout=0.5)
    finally:
        worker.stop(timeout=5)
    assert log.read_text().startswith("an earlier run")  # appended to, never truncated
