"""Invariant 1: every run ends in success, failure or canceled, whatever a
project's code, the result, or the services do. Each case here left a run
``running`` for good before it was fixed (issue #14)."""

import pytest
from celery import chord, group
from django.db import connection

from django_workflows import engine, foreach, launch_canvas
from django_workflows.exceptions import CanvasError
from django_workflows.models import TaskRun, Workflow
from django_workflows.models import TaskRunStatus as T
from django_workflows.models import WorkflowStatus as W
from tests.testapp.receivers import FLAG
from tests.testapp.tasks import (
    add,
    collect,
    const,
    deep,
    fail,
    fail_with_nul,
    nul_result,
    own_store_fails,
    store_fails,
    tsum,
)

pytestmark = pytest.mark.django_db(transaction=True)


def statuses(wf) -> dict[int, str]:
    return dict(wf.task_runs.values_list("node", "status"))


@pytest.fixture
def raising_receivers():
    """Every receiver of the app's signals raises, here and in the worker."""
    FLAG.touch()
    yield
    FLAG.unlink()


@pytest.mark.worker
def test_raising_receivers_strand_no_run(worker, raising_receivers):
    chain_run = launch_canvas(add.s(1, 1) | add.s(2) | add.s(3))
    chord_run = launch_canvas(chord([add.s(i, i) for i in range(3)], tsum.s()))
    failing = launch_canvas(add.s(1, 1) | fail.s() | add.s(1))

    assert chain_run.wait().status == W.SUCCESS and chain_run.result == 7
    assert chord_run.wait().status == W.SUCCESS and chord_run.result == 6
    assert failing.wait().status == W.FAILURE
    assert statuses(failing) == {0: T.SUCCESS, 1: T.FAILURE, 2: T.UPSTREAM_FAILED}


@pytest.mark.worker
def test_an_exception_message_with_a_nul_character_fails_the_task(worker):
    wf = launch_canvas(add.s(1, 1) | fail_with_nul.s()).wait()
    assert wf.status == W.FAILURE
    failed = wf.task_runs.get(node=1)
    assert failed.status == T.FAILURE and failed.exception_type == "ValueError"
    assert failed.exception_message in ("bad\x00byte", "bad\\x00byte")


@pytest.mark.worker
def test_a_result_with_a_nul_character_ends_the_run(worker):
    wf = launch_canvas(nul_result.s() | collect.s()).wait()
    if connection.vendor == "postgresql":
        # jsonb has no NUL: the task fails and says so.
        assert wf.status == W.FAILURE
        failed = wf.task_runs.get(node=0)
        assert "NUL" in failed.exception_message
        assert statuses(wf) == {0: T.FAILURE, 1: T.UPSTREAM_FAILED}
    else:
        assert wf.status == W.SUCCESS
        assert wf.result == {"args": ["a\x00b"], "kwargs": {}}


@pytest.mark.worker
def test_a_result_too_deep_for_json_fails_the_task(worker):
    wf = launch_canvas(deep.s(5000) | collect.s()).wait()
    assert wf.status == W.FAILURE
    failed = wf.task_runs.get(node=0)
    assert "JSON" in failed.exception_message and "deep" in failed.exception_message
    assert statuses(wf) == {0: T.FAILURE, 1: T.UPSTREAM_FAILED}


@pytest.mark.worker
def test_a_result_store_that_fails_after_the_success_goes_on_as_celery_does(worker):
    """Celery sends a chain's next task before it stores a result; the run
    reports the success there too (``Backend.mark_as_done``). A store that
    then fails is Celery's internal error, and the chain goes on, natively
    and tracked."""
    canvas = add.s(1, 1) | store_fails.s() | add.s(1)
    assert canvas.apply_async().get(timeout=30, disable_sync_subtasks=False) == 3
    wf = launch_canvas(canvas).wait()
    assert (wf.status, wf.result) == (W.SUCCESS, 3)
    assert statuses(wf) == {0: T.SUCCESS, 1: T.SUCCESS, 2: T.SUCCESS}


@pytest.mark.worker
def test_a_result_store_of_its_own_that_fails_fails_the_task(worker):
    """A backend class with its own ``mark_as_done``: the success is reported
    after the store, which fails (neither success nor failure is signalled)."""
    wf = launch_canvas(add.s(1, 1) | own_store_fails.s() | add.s(1)).wait()
    assert wf.status == W.FAILURE
    failed = wf.task_runs.get(node=1)
    assert failed.status == T.FAILURE
    assert "result backend is down" in failed.exception_message
    assert statuses(wf) == {0: T.SUCCESS, 1: T.FAILURE, 2: T.UPSTREAM_FAILED}


def test_launch_returns_the_run_when_receivers_raise(raising_receivers, monkeypatch):
    monkeypatch.setattr("celery.canvas.Signature.apply_async", lambda self, *a, **k: None)
    wf = launch_canvas(add.s(1, 1) | add.s(2))
    assert wf.status == W.RUNNING
    assert statuses(wf) == {0: T.QUEUED, 1: T.PENDING}


def test_broker_down_while_a_success_claims_children_leaves_them_to_recovery(
    broker_down, celery_app, monkeypatch
):
    canvas = const.s([1, 2]) | group(collect.s(), foreach(add.s(1)))
    with monkeypatch.context() as launch_only:  # the launch's sends are recorded, not made
        launch_only.setattr("celery.canvas.Signature.apply_async", lambda self, *a, **k: None)
        wf = launch_canvas(canvas)
    root = wf.task_runs.get(node=0)
    engine.task_started(str(root.pk), str(wf.pk), "w")
    engine.task_succeeded(str(root.pk), str(wf.pk), 0, [1, 2])  # must not raise

    # Nothing failed for a broker outage: the plain child and the foreach
    # node's items are claimed and unsent, the recovery pass's to send.
    wf.refresh_from_db()
    assert wf.status == W.RUNNING
    unsent = TaskRun.objects.filter(workflow=wf, status=T.QUEUED, sent_at=None)
    assert sorted(unsent.values_list("task", flat=True)) == sorted(
        [collect.name, add.name, add.name]
    )
    unsent_ids = sorted(str(pk) for pk in unsent.values_list("pk", flat=True))

    monkeypatch.undo()  # the broker is back
    celery_app.set_current()
    sent = []
    monkeypatch.setattr(
        "celery.canvas.Signature.apply_async", lambda self, *a, **k: sent.append(k["task_id"])
    )
    assert sorted(engine.recover(grace=0)) == unsent_ids
    assert sorted(sent) == unsent_ids
    assert not unsent.exists()


def test_arguments_the_database_cannot_store_are_refused_at_launch(monkeypatch):
    monkeypatch.setattr("celery.canvas.Signature.apply_async", lambda self, *a, **k: None)
    if connection.vendor != "postgresql":
        assert launch_canvas(const.s("a\x00b")).task_runs.get().args == ["a\x00b"]
        return
    with pytest.raises(CanvasError, match="NUL"):
        launch_canvas(const.s("a\x00b"))
    assert not Workflow.objects.exists()
