"""``STORE_CELERY_RESULTS``: whether Celery also keeps workflow tasks' results.

By default a workflow task's result is in Celery's result backend as well as
on its task run (``AsyncResult(task_run.id).get()`` works); with the setting
off only the task run keeps it, and the run still passes and returns it.
"""

import pytest
from celery import chain, chord
from celery.result import AsyncResult

from django_workflows import launch_canvas
from django_workflows.models import WorkflowStatus as W
from tests.testapp.tasks import add, tsum
from tests.worker import start_worker, stop_worker

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

QUEUE = "no-celery-results"


@pytest.fixture(scope="module")
def worker_without_celery_results(django_db_setup, django_db_blocker, tmp_path_factory):
    """A worker of its own whose settings turn the setting off (it sends the children)."""
    with django_db_blocker.unblock():
        log = tmp_path_factory.mktemp("no-results") / "no-results.log"
        env = {"DJANGO_SETTINGS_MODULE": "tests.settings_without_celery_results"}
        proc = start_worker(log, "-Q", QUEUE, concurrency=2, env=env)
    yield proc
    stop_worker(proc)


def test_by_default_celery_keeps_each_result_too(worker):
    wf = launch_canvas(add.s(1, 1) | add.s(2)).wait()
    assert wf.status == W.SUCCESS and wf.result == 4
    for run in wf.task_runs.all():
        assert AsyncResult(str(run.pk)).get(timeout=10) == run.result


def test_without_celery_results_only_the_task_runs_keep_them(
    worker_without_celery_results, settings
):
    settings.DJANGO_WORKFLOWS = {**settings.DJANGO_WORKFLOWS, "STORE_CELERY_RESULTS": False}
    mine = {"queue": QUEUE}
    canvas = chain(
        add.s(1, 1).set(**mine),
        add.s(2).set(**mine),
        chord([add.s(i).set(**mine) for i in range(3)], tsum.s().set(**mine)),
    )
    wf = launch_canvas(canvas).wait()
    assert wf.status == W.SUCCESS and wf.result == 15  # (4 + 0) + (4 + 1) + (4 + 2)
    for run in wf.task_runs.all():
        assert run.result is not None
        assert AsyncResult(str(run.pk)).state == "PENDING"  # Celery never stored it
