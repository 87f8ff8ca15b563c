"""Django signals for integrators, sent by the engine (in process, broker send recorded)."""

import pytest
from celery import chain

from django_workflows import engine, launch_canvas
from django_workflows.models import TaskRunStatus as T
from django_workflows.models import WorkflowStatus as W
from django_workflows.signals import task_run_changed, workflow_finished, workflow_started
from tests.testapp.tasks import add, fail


@pytest.fixture
def heard():
    events = []

    def listen(signal_name):
        def receiver(sender, **kwargs):
            kwargs.pop("signal")
            events.append((signal_name, kwargs))

        return receiver

    receivers = {
        workflow_started: listen("started"),
        workflow_finished: listen("finished"),
        task_run_changed: listen("changed"),
    }
    for signal, receiver in receivers.items():
        signal.connect(receiver)
    yield events
    for signal, receiver in receivers.items():
        signal.disconnect(receiver)


@pytest.mark.django_db(transaction=True)
def test_signals_follow_a_run_from_start_to_failure_and_resume(heard, monkeypatch):
    monkeypatch.setattr("celery.canvas.Signature.apply_async", lambda self, *a, **k: None)
    wf = launch_canvas(chain(add.s(1, 1), fail.s(), add.s(1)))
    first, second, third = wf.task_runs.order_by("node")

    engine.task_started(str(first.pk), str(wf.pk), "w")
    engine.task_succeeded(str(first.pk), str(wf.pk), 0, 2)
    engine.task_started(str(second.pk), str(wf.pk), "w")
    engine.task_failed(str(second.pk), ValueError("boom"))

    assert [(name, kw.get("status")) for name, kw in heard] == [
        ("started", None),
        ("changed", T.RUNNING),
        ("changed", T.SUCCESS),
        ("changed", T.QUEUED),
        ("changed", T.RUNNING),
        ("changed", T.FAILURE),
        ("changed", T.UPSTREAM_FAILED),
        ("finished", W.FAILURE),
    ]
    assert heard[0][1] == {"workflow_id": wf.pk, "name": "adhoc", "resumed": False}
    assert heard[-2][1]["task_run_ids"] == [third.pk]

    heard.clear()
    wf.resume()
    assert ("started", {"workflow_id": wf.pk, "name": "adhoc", "resumed": True}) in heard
