"""The engine on a real worker process: results, failures, joins, counters."""

from collections import Counter

import pytest
from celery import chord, group, signature

from django_workflows import launch, launch_canvas
from django_workflows.models import TaskRun, Workflow
from django_workflows.models import TaskRunStatus as T
from django_workflows.models import WorkflowStatus as W
from tests.helpers import node
from tests.testapp.tasks import (
    add,
    collect,
    fail,
    nap,
    not_a_number,
    not_json,
    not_json_unstored,
    tsum,
)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def statuses(wf: Workflow) -> dict[int, str]:
    return dict(wf.task_runs.values_list("node", "status"))


def test_registered_workflow_runs_with_its_payload(worker):
    wf = launch("arith", {"x": 2, "y": 3})
    assert wf.status == W.RUNNING and wf.started is not None  # started: its root was sent
    assert node(wf, 0).sent_at is not None

    wf.wait(timeout=30)

    # add(2, 3)=5 -> [add(5, 1), add(5, 2)] -> tsum([6, 7])
    assert wf.status == W.SUCCESS
    assert wf.result == 13
    assert wf.payload == {"x": 2, "y": 3}
    assert (wf.tasks_total, wf.tasks_finished, wf.tasks_succeeded, wf.tasks_failed) == (4, 4, 4, 0)
    assert wf.created <= wf.started <= wf.finished
    for run in wf.task_runs.all():
        assert run.attempts == 1
        assert run.worker.startswith("worker-")
        assert run.queued_at <= run.started_at <= run.finished_at


def test_task_run_ids_are_the_celery_task_ids(worker, celery_app):
    """The result backend (django-celery-results' TaskResult, Redis...) knows them by id."""
    wf = launch_canvas(add.s(1, 2) | add.s(3)).wait(timeout=30)

    for run in wf.task_runs.all():
        assert celery_app.AsyncResult(str(run.pk)).get(timeout=10, interval=0.02) == run.result


def test_failure_stores_the_error_and_fails_descendants_at_once(worker):
    canvas = group(
        add.s(1, 1) | fail.s(message="disk full") | add.s(1) | add.s(2),
        add.s(5, 5) | nap.s(0.3),  # an independent branch keeps running
    )
    wf = launch_canvas(canvas).wait(timeout=30)

    assert wf.status == W.FAILURE
    assert wf.result is None
    assert statuses(wf) == {
        0: T.SUCCESS,
        1: T.FAILURE,
        2: T.UPSTREAM_FAILED,
        3: T.UPSTREAM_FAILED,
        4: T.SUCCESS,
        5: T.SUCCESS,
    }
    failed = wf.task_runs.get(node=1)
    assert failed.exception_type == "ValueError"
    assert failed.exception_message == "disk full"
    assert "Traceback" in failed.traceback and "raise ValueError(message)" in failed.traceback
    assert (wf.tasks_finished, wf.tasks_failed, wf.tasks_succeeded) == (6, 1, 3)


def test_descendants_never_run_after_a_failure(worker, calls):
    wf = launch("breaks", {"message": "nope"}).wait(timeout=30)

    assert wf.status == W.FAILURE
    assert [task for task, _, _ in calls()] == ["add", "fail"]
    assert statuses(wf)[2] == T.UPSTREAM_FAILED


def test_a_join_waits_for_every_branch_even_after_one_failed(worker):
    canvas = chord([fail.s(), nap.s(0.5, value=1)], tsum.s())
    wf = launch_canvas(canvas).wait(timeout=30)

    assert wf.status == W.FAILURE
    assert statuses(wf) == {0: T.FAILURE, 1: T.SUCCESS, 2: T.UPSTREAM_FAILED}


@pytest.mark.parametrize(
    "task", [not_json, not_json_unstored, not_a_number], ids=["stored", "ignore_result", "nan"]
)
def test_a_result_the_json_serializer_cannot_carry_fails_the_task(worker, task):
    wf = launch_canvas(add.s(1, 1) | task.s() | add.s(1)).wait(timeout=30)

    assert wf.status == W.FAILURE
    run = wf.task_runs.get(node=1)
    assert run.status == T.FAILURE
    assert "JSON" in run.exception_message or "serializ" in run.exception_message.lower()
    assert statuses(wf)[2] == T.UPSTREAM_FAILED


def test_join_with_many_parents_is_dispatched_exactly_once(worker, calls):
    """40 parents finish on 3 worker processes at once; the join runs once, 8 times over."""
    runs = [launch_canvas(chord([add.s(i, 0) for i in range(40)], collect.s())) for _ in range(8)]
    for wf in runs:
        wf.wait(timeout=60)
        assert wf.status == W.SUCCESS
        assert wf.result == {"args": [list(range(40))], "kwargs": {}}
    joins = [task for task, _, _ in calls() if task == "collect"]
    assert len(joins) == 8
    assert Counter(task for task, _, _ in calls())["add"] == 320


def test_tasks_outside_a_workflow_create_no_rows(worker):
    assert add.delay(2, 2).get(timeout=30, interval=0.02) == 4
    assert (add.s(1, 1) | add.s(1)).apply_async().get(timeout=30, interval=0.02) == 3
    assert not TaskRun.objects.exists() and not Workflow.objects.exists()


def test_countdown_option_is_honoured(worker):
    wf = launch_canvas(add.s(1, 1) | add.s(1).set(countdown=1)).wait(timeout=30)

    second = wf.task_runs.get(node=1)
    assert second.options == {"countdown": 1}
    assert (second.started_at - second.queued_at).total_seconds() >= 0.9


def test_empty_group_finishes_at_once():
    wf = launch_canvas(group([]))
    wf.refresh_from_db()
    assert (wf.status, wf.result, wf.tasks_total) == (W.SUCCESS, [], 0)


def test_a_child_whose_arguments_do_not_fit_fails_clearly_instead_of_hanging(worker):
    # nap returns None, which the chain prepends: add(None, 1, 1) cannot be called.
    wf = launch_canvas(nap.s(0) | add.s(1, 1) | add.s(1)).wait(timeout=30)

    assert wf.status == W.FAILURE
    bad = wf.task_runs.get(node=1)
    assert (bad.status, bad.exception_type) == (T.FAILURE, "TypeError")
    assert "positional arguments" in bad.exception_message
    assert statuses(wf)[2] == T.UPSTREAM_FAILED


def test_a_task_the_worker_does_not_know_fails_the_run(worker):
    """Celery only logs an unknown task; the run must not wait for it for ever."""
    canvas = add.s(1, 1) | signature("no.such.task") | add.s(1)
    wf = launch_canvas(canvas).wait(timeout=30)

    assert wf.status == W.FAILURE
    assert statuses(wf) == {0: T.SUCCESS, 1: T.FAILURE, 2: T.UPSTREAM_FAILED}
    unknown = wf.task_runs.get(node=1)
    assert unknown.exception_type == "NotRegistered"
    assert "does not know task 'no.such.task'" in unknown.exception_message


def test_a_parent_finishing_after_its_join_failed_upstream_closes_the_run(worker):
    """The join is upstream_failed, not pending: the last success must end the run."""
    wf = launch_canvas(chord([fail.s(message="early"), nap.s(0.5, value=1)], tsum.s()))
    wf.wait(timeout=30)

    assert wf.status == W.FAILURE
    assert statuses(wf) == {0: T.FAILURE, 1: T.SUCCESS, 2: T.UPSTREAM_FAILED}
    nap_run, failed = wf.task_runs.get(node=1), wf.task_runs.get(node=0)
    assert nap_run.finished_at > failed.finished_at
    assert wf.finished >= nap_run.finished_at
