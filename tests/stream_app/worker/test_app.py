"""The worker's Faust app: the parts of Faust it replaces."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import warnings

import pytest

from stream_app.exceptions import ConfigError
from stream_app.settings import Settings
from stream_app.worker.app import _Consumer, _KeepQueuesOnResume, create_app, use_event_loop


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


def test_the_consumer_hands_over_a_record_inline_and_races_only_a_delivery_that_waits(settings, topics, registry):
    app = create_app(settings.model_copy(update={"registry_dir": registry}))
    consumer = app.consumer
    assert isinstance(consumer, _Consumer)
    steps: list[str] = []

    async def scenario() -> None:
        outer = asyncio.current_task()
        suspend = asyncio.Event()

        async def deliver() -> str:
            steps.append("inline" if asyncio.current_task() is outer else "in a task")
            return "delivered"

        result = await consumer.wait_first(deliver(), suspend.wait())
        assert (result.results, result.stopped) == (["delivered"], False)

        room = asyncio.Event()

        async def deliver_when_room() -> str:
            steps.append("waiting")
            await room.wait()
            steps.append("after the wait")
            return "late"

        # a delivery that waits and then finishes: its result, as mode's race gives it
        racing = asyncio.ensure_future(consumer.wait_first(deliver_when_room(), suspend.wait()))
        await asyncio.sleep(0.01)
        room.set()
        assert (await racing).results == ["late"]
        # a delivery that waits while the flow is suspended is abandoned
        room.clear()
        racing = asyncio.ensure_future(consumer.wait_first(deliver_when_room(), suspend.wait()))
        await asyncio.sleep(0.01)
        suspend.set()
        await racing
        room.set()
        await asyncio.sleep(0.01)

        async def fail() -> None:
            raise ValueError("bad record")

        with pytest.raises(ValueError, match="bad record"):
            await consumer.wait_first(fail(), suspend.wait())

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        app.loop.run_until_complete(scenario())
        gc.collect()
    assert steps == ["inline", "waiting", "after the wait", "waiting"]
    assert not [w for w in caught if "never awaited" in str(w.message)]


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
