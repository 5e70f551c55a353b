import os
import subprocess
import sys

import pytest

from stream_app.broker import free_port, port_is_free

pytestmark = pytest.mark.integration


def test_demo_runs_end_to_end_and_stops_its_broker(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ISTREAM_", "KAFKA_"))}
    result = subprocess.run(
        [sys.executable, "-m", "stream_app.demo", "--dir", tmp_path, "--users", "5", "--events", "150"],
        env={**env, "ISTREAM_BROKER_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Tansu broker (memory storage) on 127.0.0.1:{port}" in result.stdout
    assert "read back 150 of 150 events: 5 users" in result.stdout
    assert "events per type: " in result.stdout
    assert (tmp_path / "sample-events.jsonl").exists()
    assert "broker stopped" in result.stdout
    assert port_is_free("127.0.0.1", port)
