"""Tasks outside any workflow cost the app nothing and raise nothing, whatever their ids.

A dedicated worker (its own queue) logs every SQL statement it runs: the app's signal
handlers must not touch its tables for a task without the run header, on any path
(failure in the pool, a hard time limit or an expiry in the worker's main process, an
unknown task), with a custom task id or a UUID.
"""

import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from django_celery_results.models import TaskResult

from django_workflows import launch_canvas
from django_workflows.models import TaskRunStatus as T
from django_workflows.models import WorkflowStatus as W
from tests.helpers import node, until
from tests.testapp.tasks import add, fail, nap
from tests.worker import start_worker, stop_worker

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

QUEUE = "outside"


@pytest.fixture(scope="module")
def sql_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    with django_db_blocker.unblock():
        # Its own node name ("outside-<pid>@host"): the session worker is "worker-<pid>@host",
        # and RabbitMQ refuses a second consumer of the same node's mailbox.
        log = tmp_path_factory.mktemp("outside") / "outside.log"
        proc = start_worker(log, "-Q", QUEUE, concurrency=2, env={"DW_LOG_SQL": "1"})
    proc.log = log
    yield proc
    stop_worker(proc)


def send_every_kind(task_id) -> list[str]:
    """A failure, a hard time limit, an expiry and an unknown task: their ids."""
    from example_project.celery import app

    ids = [f"{task_id('fail')}", task_id("timeout"), task_id("expired"), task_id("unknown")]
    fail.apply_async(task_id=ids[0], queue=QUEUE)
    nap.apply_async((30,), task_id=ids[1], queue=QUEUE, time_limit=1)
    add.apply_async((1, 1), task_id=ids[2], queue=QUEUE, expires=timezone.now() - timedelta(1))
    app.send_task("tests.testapp.tasks.no_such_task", task_id=ids[3], queue=QUEUE)
    return ids


@pytest.mark.skipif(
    not str(settings.CELERY_RESULT_BACKEND).startswith("django-db"),
    reason="reads the worker's SQL log, with django-db's result writes as the witness",
)
@pytest.mark.parametrize(
    "task_id",
    [lambda kind: f"my-{kind}-{uuid.uuid4().hex[:6]}", lambda kind: str(uuid.uuid4())],
    ids=["custom ids", "uuids"],
)
def test_tasks_outside_workflows_cost_no_query_and_raise_nothing(sql_worker, task_id):
    start = sql_worker.log.stat().st_size
    ids = send_every_kind(task_id)

    finished = until(
        lambda: TaskResult.objects.filter(task_id__in=ids).count() == len(ids),
        what="every task to be recorded by the result backend",
    )
    assert finished
    states = dict(TaskResult.objects.filter(task_id__in=ids).values_list("task_id", "status"))
    assert [states[i] for i in ids] == ["FAILURE", "FAILURE", "REVOKED", "FAILURE"]
    until(lambda: ids[1] in sql_worker.log.read_text()[start:], what="the time limit's log")

    log = sql_worker.log.read_text()[start:]
    assert "django_celery_results_taskresult" in log  # the worker's SQL is logged
    assert "Signal handler" not in log and "ValidationError" not in log
    assert "django_workflows_" not in log, log


def test_a_workflow_task_over_its_hard_time_limit_still_fails_its_run(sql_worker):
    wf = launch_canvas(nap.s(30).set(time_limit=1, queue=QUEUE) | add.s(1))
    wf.wait(timeout=30)

    assert wf.status == W.FAILURE
    assert node(wf, 0).status == T.FAILURE and node(wf, 0).exception_type == "TimeLimitExceeded"
    assert node(wf, 1).status == T.UPSTREAM_FAILED
