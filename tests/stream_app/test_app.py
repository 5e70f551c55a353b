"""The worker's Faust app: the parts of Faust it replaces."""

from __future__ import annotations

from stream_app.app import _KeepQueuesOnResume, create_app


def test_resuming_flow_control_keeps_the_records_already_queued_for_the_agents(settings, topics):
    app = create_app(settings)
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
