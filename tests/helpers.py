"""Small helpers shared by the test modules."""

import time

from django_workflows.models import Edge, ScheduleFire, TaskAttempt, TaskRun, Workflow


def until(predicate, timeout=30.0, what="condition"):
    """Wait on state, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"Timed out waiting for {what}")


def dangling() -> dict[str, int]:
    """Rows pointing at a run or task run that is gone, by relation: the database
    keeps no foreign-key constraint onto those tables (models.py), so deletes
    must leave none."""
    runs, tasks = Workflow.objects.values("pk"), TaskRun.objects.values("pk")
    found = {
        "task run -> run": TaskRun.objects.exclude(workflow__in=runs),
        "foreach item -> task run": TaskRun.objects.filter(mapped_from__isnull=False).exclude(
            mapped_from__in=tasks
        ),
        "edge child": Edge.objects.exclude(from_taskrun__in=tasks),
        "edge parent": Edge.objects.exclude(to_taskrun__in=tasks),
        "attempt -> task run": TaskAttempt.objects.exclude(task_run__in=tasks),
        "relaunch -> run": Workflow.objects.filter(relaunched_from__isnull=False).exclude(
            relaunched_from__in=runs
        ),
        "schedule fire -> run": ScheduleFire.objects.filter(workflow__isnull=False).exclude(
            workflow__in=runs
        ),
    }
    return {what: count for what, rows in found.items() if (count := rows.count())}


def node(wf: Workflow, index: int) -> TaskRun:
    return wf.task_runs.get(node=index)


def worker_idle(app) -> bool:
    """No task is running, reserved or scheduled on any worker."""
    inspect = app.control.inspect(timeout=1.0)
    active, reserved, scheduled = inspect.active(), inspect.reserved(), inspect.scheduled()
    return all(replies and not any(replies.values()) for replies in (active, reserved, scheduled))


def chord_run(size: int, failed: int = 0) -> Workflow:
    """A finished chord of ``size`` task runs (add, a group of ``size - 2``, a body), as rows.

    Nothing runs: the roots' send is skipped and the statuses are written as a run
    would leave them, ``failed`` members (spread through the group) failing with
    their exception and the body upstream_failed. For pages about big runs.
    """
    from unittest import mock

    from celery import group
    from django.utils import timezone

    from django_workflows import launch_canvas
    from django_workflows.models import TaskRunStatus as T
    from tests.testapp.tasks import add

    with mock.patch("django_workflows.engine.progress.dispatch"):
        wf = launch_canvas(add.s(1, 1) | group(add.s(i) for i in range(size - 2)) | add.s(0))
    now = timezone.now()
    runs = wf.task_runs.all()
    runs.update(status=T.SUCCESS, attempts=1, started_at=now, finished_at=now, result=2)
    step = max(1, (size - 2) // max(failed, 1))
    bad = [1 + i * step for i in range(failed)]
    runs.filter(node__in=bad).update(
        status=T.FAILURE,
        result=None,
        exception_type="ValueError",
        exception_message="bad input",
        traceback="Traceback (most recent call last):\nValueError: bad input",
    )
    if failed:
        runs.filter(node=size - 1).update(status=T.UPSTREAM_FAILED, started_at=None, attempts=0)
    Workflow.objects.filter(pk=wf.pk).update(
        status="failure" if failed else "success",
        started=now,
        finished=now,
        tasks_finished=size,
        tasks_succeeded=size - failed - (1 if failed else 0),
        tasks_failed=failed,
    )
    wf.refresh_from_db()
    return wf


def record_sends(monkeypatch) -> list:
    """No broker: the task runs the engine would send are recorded instead
    (in order), and everything else happens as with a broker (sent marks,
    foreach expansions, the children a success sends before its commit)."""
    from django_workflows.engine import send

    recorded: list = []

    def publish(runs, results):
        recorded.extend(runs)
        return send.Sent(delivered=[run.pk for run in runs])

    monkeypatch.setattr(send, "publish", publish)
    return recorded
