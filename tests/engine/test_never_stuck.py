"""Invariant 1: every run ends in success, failure or canceled, whatever a
project's code, the result, or the services do. Each case here left a run
``running`` for good before it was fixed (issue #14)."""

import pytest
from celery import chord, group
from django.db import connection, transaction

from django_workflows import engine, foreach, launch_canvas
from django_workflows.exceptions import CanvasError
from django_workflows.models import TaskRun, Workflow
from django_workflows.models import TaskRunStatus as T
from django_workflows.models import WorkflowStatus as W
from tests.helpers import until
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


# -- a launch whose process died or failed after its commit ------------------------------

DIES_READING_THE_HEADER = """
import os, signal
from celery import chord
from django_workflows import launch_canvas
from tests.testapp.tasks import identity, tsum

def header():
    yield identity.si(1)
    yield identity.si(2)
    os.kill(os.getpid(), signal.SIGKILL)
    yield identity.si(3)

launch_canvas(chord(header(), tsum.s()))
"""


@pytest.mark.worker
def test_a_chord_whose_header_generator_was_being_read_by_a_killed_launcher_fails(worker):
    from django_workflows.engine import recover
    from tests.worker import run_python

    launcher = run_python(DIES_READING_THE_HEADER)
    assert launcher.returncode == -9, launcher.stderr
    wf = Workflow.objects.get()
    members = wf.task_runs.exclude(task=tsum.name)
    until(lambda: members.exists() and not members.exclude(status=T.SUCCESS).exists())
    body = wf.task_runs.get(task=tsum.name)
    assert body.status == T.PENDING  # nobody will read the rest of the header
    assert recover(grace=60) == [] and wf.task_runs.get(pk=body.pk).status == T.PENDING

    recover(grace=0)

    wf.refresh_from_db()
    body.refresh_from_db()
    assert (wf.status, body.status, body.exception_type) == (W.FAILURE, T.FAILURE, "HeaderUnread")
    assert "was not read to its end" in body.exception_message
    assert (wf.headers_held, wf.header_read_at) == (None, None)


def test_a_header_generator_too_slow_for_the_recovery_grace_is_read_no_further(sent):
    from django_workflows.engine import recover

    read = []

    def header():  # read one member ahead, as Celery reads it: 1 joins when 2 is read
        for i in range(1, 5):
            if i == 3:
                recover(grace=0)  # a pass finds no member read within its grace
            read.append(i)
            yield add.si(i, i)

    wf = launch_canvas(chord(header(), tsum.s()))

    body = wf.task_runs.get(task=tsum.name)
    assert (body.status, body.exception_type) == (T.FAILURE, "HeaderUnread")
    assert read == [1, 2, 3]  # read no further than the member after the pass
    assert list(wf.task_runs.filter(task=add.name).values_list("args", flat=True)) == [[1, 1]]
    wf.refresh_from_db()
    assert (wf.headers_held, wf.header_read_at) == (None, None)


class ProjectCallbackFailed(Exception):
    pass


def _launch_after_a_failing_callback(canvas) -> Workflow:
    """Launch ``canvas`` in a transaction whose earlier on_commit callback
    raises: Django runs no callback after it, the launch's start among them."""

    def fails():
        raise ProjectCallbackFailed

    with pytest.raises(ProjectCallbackFailed):
        with transaction.atomic():
            transaction.on_commit(fails)
            wf = launch_canvas(canvas)
    wf.refresh_from_db()
    return wf


@pytest.mark.worker
def test_a_launch_whose_start_never_ran_is_started_by_the_recovery_pass(worker):
    from django_workflows.engine import recover
    from django_workflows.signals import workflow_started

    wf = _launch_after_a_failing_callback(add.s(1, 1) | add.s(2))
    assert wf.status == W.PENDING and wf.task_runs.get(node=0).sent_at is None
    assert recover(grace=60) == []
    started = []
    workflow_started.connect(lambda **kwargs: started.append(kwargs), weak=False, dispatch_uid="t")
    try:
        recover(grace=0)
    finally:
        workflow_started.disconnect(dispatch_uid="t")

    assert [(s["workflow_id"], s["resumed"]) for s in started] == [(wf.pk, False)]
    assert wf.wait().status == W.SUCCESS and wf.result == 4
    assert wf.started is not None


def test_a_launch_whose_start_never_ran_fails_the_chord_its_generator_header_held():
    from django_workflows.engine import recover

    wf = _launch_after_a_failing_callback(chord((add.si(i, i) for i in range(3)), tsum.s()))
    assert wf.status == W.PENDING

    recover(grace=0)

    wf.refresh_from_db()
    assert wf.status == W.FAILURE and statuses(wf) == {0: T.FAILURE}
    assert wf.task_runs.get().exception_type == "HeaderUnread"
