"""Invariant 1 when the database drops the worker's connection (a restart, a
failover): the worker makes its report again on a new connection, and a
report made again counts once. Before, Celery logged and dropped the failed
report and the run stayed ``running`` for good (found by benchmarks/soak.py)."""

from types import SimpleNamespace

import pytest
from celery.app.task import Context
from django.db import OperationalError, connection

from django_workflows import launch_canvas, tracking
from django_workflows.headers import ATTEMPT_HEADER, NODE_HEADER, RUN_HEADER
from django_workflows.models import TaskRunStatus as T
from django_workflows.models import WorkflowStatus as W
from tests.helpers import node, record_sends
from tests.testapp.tasks import add

pytestmark = pytest.mark.django_db(transaction=True)


class Drops:
    """Django execute wrapper: the first query whose SQL holds ``marker`` fails
    as when the server closes the connection; the next ones go through."""

    def __init__(self, marker: str = "") -> None:
        self.marker, self.dropped = marker, 0

    def __call__(self, execute, sql, params, many, context):
        if not self.dropped and self.marker in sql:
            self.dropped += 1
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)


@pytest.fixture
def unsent(monkeypatch):
    """Claimed task runs are not sent (recorded): this test plays the worker itself."""
    return record_sends(monkeypatch)


def task_of(wf, index: int) -> SimpleNamespace:
    """The task as a worker's signal handlers see it, with the engine's headers."""
    run = node(wf, index)
    headers = {RUN_HEADER: str(wf.pk), NODE_HEADER: index, ATTEMPT_HEADER: str(run.claim)}
    return SimpleNamespace(request=Context(id=str(run.pk), hostname="w@h", retries=0, **headers))


def test_start_and_success_are_reported_again_on_a_new_connection(unsent):
    wf = launch_canvas(add.s(1, 1) | add.s(2))
    task = task_of(wf, 0)

    with connection.execute_wrapper(drop := Drops()):
        tracking.on_prerun(task_id=task.request.id, task=task)
    assert drop.dropped == 1 and node(wf, 0).status == T.RUNNING

    with connection.execute_wrapper(drop := Drops()):
        tracking.on_success(sender=task, result=2)
    assert drop.dropped == 1
    assert node(wf, 0).status == T.SUCCESS and node(wf, 0).result == 2
    assert node(wf, 1).status == T.QUEUED  # claimed: sent, or recovered if it is not


def test_a_failure_reported_again_after_a_drop_midway_is_counted_once(unsent):
    wf = launch_canvas(add.s(1, 1) | add.s(2) | add.s(3))
    task = task_of(wf, 0)
    tracking.on_prerun(task_id=task.request.id, task=task)

    # The connection drops after the task run's failure was written, before the run's counters.
    with connection.execute_wrapper(drop := Drops("tasks_finished")):
        tracking.on_failure(sender=task, task_id=task.request.id, exception=ValueError("boom"))

    assert drop.dropped == 1
    wf.refresh_from_db()
    assert [node(wf, i).status for i in range(3)] == [
        T.FAILURE,
        T.UPSTREAM_FAILED,
        T.UPSTREAM_FAILED,
    ]
    assert (wf.status, wf.tasks_finished, wf.tasks_failed) == (W.FAILURE, 3, 1)
    assert wf.task_runs.get(node=0).history.count() == 1


def test_a_success_report_that_fails_before_the_store_is_made_after_it(
    unsent, monkeypatch, celery_app, caplog
):
    """The success is reported from ``mark_as_done``, before Celery stores the
    result; if that report raises, Celery still stores the result, and the
    ``task_success`` handler makes the report. Reported once, it is not made twice."""
    from django_workflows import engine

    wf = launch_canvas(add.s(1, 1) | add.s(2))
    task = task_of(wf, 0)
    tracking.on_prerun(task_id=task.request.id, task=task)
    stored, reports = [], []
    monkeypatch.setattr(tracking, "_celery_mark_as_done", lambda *args: stored.append(args[1:3]))
    succeeded = engine.task_succeeded

    def fails_once(*args):
        reports.append(args[0])
        if len(reports) == 1:
            raise RuntimeError("the report failed")
        return succeeded(*args)

    monkeypatch.setattr(engine, "task_succeeded", fails_once)

    tracking.report_before_storing(celery_app.backend, task.request.id, 2, task.request)
    assert stored == [(task.request.id, 2)]  # the store is made all the same
    assert node(wf, 0).status == T.RUNNING
    assert "Reporting the success of task" in caplog.text
    tracking.on_success(sender=task, result=2)
    assert node(wf, 0).status == T.SUCCESS and node(wf, 1).status == T.QUEUED
    tracking.on_success(sender=task, result=2)
    assert len(reports) == 2
