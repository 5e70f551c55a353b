"""The worker's Faust app: the parts of Faust it replaces."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stream_app.exceptions import ConfigError
from stream_app.settings import Settings
from stream_app.worker.app import _KeepQueuesOnResume, create_app, use_event_loop


def test_resuming_flow_control_keeps_the_records_already_queued_for_the_agents(settings, topics, registry):
    app = create_app(settings.model_copy(update={"registry_dir": registry}))
    assert type(app.flow_control) is _KeepQueuesOnResume
    queue = app.FlowControlQueue(maxsize=10, clear_on_resume=True)
    queue.put_nowait("fetched before the seek")
    app.flow_control.resume()
    assert app.flow_control.is_active()
    assert queue.get_nowait() == "fetched before the seek"
    # a revocation still empties the queues
    queue.put_nowait("of a revoked partition")
    app.flow_control.clear()
    assert queue.empty()


@pytest.mark.parametrize(("choice", "loop"), [("uvloop", "uvloop.Loop"), ("asyncio", "_UnixSelectorEventLoop")])
def test_the_event_loop_setting_picks_the_loops_faust_makes(choice, loop):
    # in a child: the event loop policy is process-wide
    code = (
        "import asyncio; from stream_app.worker.app import use_event_loop; from stream_app.settings import Settings; "
        f"use_event_loop(Settings(worker_event_loop={choice!r})); "
        "kind = type(asyncio.new_event_loop()); print(f'{kind.__module__}.{kind.__qualname__}')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out.endswith(loop)


def test_a_missing_uvloop_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mode.loop.uvloop", None)  # import of it raises ImportError
    with pytest.raises(ConfigError, match="uvloop does not import"):
        use_event_loop(Settings(worker_event_loop="uvloop"))
