import json
import os
import signal
import subprocess
import time

import psutil
import pytest

from stream_app.broker import free_port, port_is_free
from stream_app.cli.common import istream_argv
from stream_app.topics import ALL

pytestmark = pytest.mark.integration


@pytest.fixture
def port() -> int:
    return free_port()


def test_detached_broker_starts_answers_and_stops(istream, settings, port):
    started = istream("broker", "--detach", "--port", port)
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == f"127.0.0.1:{port}"
    record = json.loads((settings.run_dir / "broker.pid").read_text())
    assert psutil.pid_exists(record["pid"]) and (settings.run_dir / "broker.log").exists()
    try:
        created = istream("topics", "create", "--bootstrap", f"127.0.0.1:{port}", "--prefix", "detached")
        assert created.returncode == 0, created.stderr
        assert f"{len(ALL)} created, 0 already existed" in created.stdout

        taken = istream("broker", "--port", port)
        assert taken.returncode != 0
        assert f"port {port} on 127.0.0.1 is already in use" in taken.stderr and "Traceback" not in taken.stderr

        again = istream("broker", "--detach", "--port", free_port())
        assert again.returncode != 0 and "already runs" in again.stderr
    finally:
        stopped = istream("broker", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped the broker on 127.0.0.1:{port} (pid {record['pid']})" in stopped.stdout
    assert not psutil.pid_exists(record["pid"]) or psutil.Process(record["pid"]).status() == psutil.STATUS_ZOMBIE
    assert port_is_free("127.0.0.1", port)
    assert not (settings.run_dir / "broker.pid").exists()
    assert "no broker" in istream("broker", "stop").stdout


def test_stop_never_kills_a_process_that_is_not_our_broker(istream, settings):
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        settings.run_dir.mkdir(parents=True)
        info = {
            "pid": bystander.pid,
            "create_time": psutil.Process(bystander.pid).create_time(),
            "binary": "/usr/bin/sleep",
            "bootstrap": "127.0.0.1:1",
            "log": "x",
        }
        (settings.run_dir / "broker.pid").write_text(json.dumps(info))
        result = istream("broker", "stop")
        assert result.returncode == 0 and "no broker" in result.stdout
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_foreground_broker_prints_its_address_and_stops_on_ctrl_c(port, settings, tmp_path):
    stderr = tmp_path / "stderr"
    # The child gets Ctrl-C's default action even where this suite runs with SIGINT ignored (as a
    # background job of a non-interactive shell, which children inherit): a handled signal is reset
    # to its default by exec, an ignored one stays ignored and the broker would never see Ctrl-C.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with open(stderr, "wb") as err:
            process = subprocess.Popen(
                [*istream_argv(), "broker", "--port", str(port)],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,
            )
    finally:
        signal.signal(signal.SIGINT, inherited)
    try:
        assert process.stdout.readline().strip() == f"127.0.0.1:{port}"
        assert not port_is_free("127.0.0.1", port)
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 0, f"exit {code}; stderr: {stderr.read_text(errors='replace')[-2000:]}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the broker too, should the test fail
            process.wait()
    deadline = time.monotonic() + 5
    while not port_is_free("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert port_is_free("127.0.0.1", port)


def test_sigterm_stops_the_foreground_broker_too(port):
    process = subprocess.Popen(
        [*istream_argv(), "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout.readline().strip() == f"127.0.0.1:{port}"
        broker_pids = [child.pid for child in psutil.Process(process.pid).children()]
        assert len(broker_pids) == 1
        process.terminate()
        assert process.wait(timeout=15) == 0
        assert not psutil.pid_exists(broker_pids[0]) or psutil.Process(broker_pids[0]).status() == psutil.STATUS_ZOMBIE
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_a_missing_binary_is_a_clear_error(istream, port):
    result = istream("broker", "--port", port, env={"CALF_TANSU_BIN": "/nonexistent/tansu"})
    assert result.returncode != 0
    assert "no Tansu broker binary" in result.stderr and "Traceback" not in result.stderr
