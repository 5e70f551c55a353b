"""``istream worker`` as a child process: what benchmarks, the demo and tests start and stop.

The child's environment is the parent's minus every ``ISTREAM_*``/``KAFKA_*`` variable, plus the
settings given, so a worker never picks up a stray setting of the shell that started it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from stream_app.cli.common import istream_argv
from stream_app.exceptions import InterestStreamError
from stream_app.settings import Settings

READY_LINE = "Worker ready"  # Faust logs it once recovery is done and the agents consume
LOG_TAIL_CHARS = 3000


class WorkerProcessError(InterestStreamError):
    """A worker process ended while it was expected to run, or never logged what was awaited."""


def worker_env(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker child: ``settings``' connection, names and timeouts, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ISTREAM_", "KAFKA_"))}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        ISTREAM_SECURITY_PROTOCOL=settings.security_protocol,
        ISTREAM_TOPIC_PREFIX=settings.topic_prefix,
        ISTREAM_SESSION_TIMEOUT_MS=str(settings.session_timeout_ms),
        ISTREAM_RUN_DIR=str(settings.run_dir),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


class WorkerProcess:
    """One ``istream worker`` child; its stdout and stderr go to ``log``."""

    def __init__(
        self,
        settings: Settings,
        registry: Path,
        data_dir: Path,
        log: Path,
        *,
        web_port: int = 0,
        env: dict[str, str] | None = None,
        argv: list[str] | None = None,
    ) -> None:
        self.log_path = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        # the log may hold an earlier run's lines (a second `make run`): this worker's own start after them,
        # or a "ready" line of the last run would pass for this one's
        self._since = self._log.tell()
        command = argv or [*istream_argv(), "worker"]
        self.proc = subprocess.Popen(
            [*command, "--registry", str(registry), "--data-dir", str(data_dir), "--web-port", str(web_port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=worker_env(settings, env),
        )
        self.web_port = web_port

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def output(self) -> str:
        """What this worker has logged so far (not what the log held before it started)."""
        with open(self.log_path, "rb") as log:
            log.seek(self._since)
            return log.read().decode(errors="replace")

    def log_tail(self) -> str:
        return f"last lines of {self.log_path}:\n{self.output()[-LOG_TAIL_CHARS:]}"

    def check_running(self) -> None:
        """``WorkerProcessError`` with the end of the log if the worker has exited."""
        if self.proc.poll() is not None:
            raise WorkerProcessError(f"the worker exited with code {self.proc.returncode}; {self.log_tail()}")

    def wait_for(self, text: str, timeout: float = 90.0) -> None:
        """Until the log shows ``text``; ``WorkerProcessError`` if the worker exits or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            self.check_running()
            time.sleep(0.2)
        raise WorkerProcessError(f"the worker did not log {text!r} within {timeout:.0f} s; {self.log_tail()}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (Faust stops gracefully), SIGKILL after ``timeout``; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
