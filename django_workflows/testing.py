"""What a project's own test suite needs to test its workflows.

- :func:`eager`: run workflows inline in the test (Celery's
  ``task_always_eager``), tracked exactly as on a worker.
- :func:`worker`: a real Celery worker in a thread of the test process, for
  tests that must see real ordering (use a transactional test case).
- :func:`stub_task`: replace the body of one task (a value, or an
  exception) without touching the others.
- :func:`assert_succeeded`, :func:`assert_failed`: assertions whose message
  tells the story of the run (which task failed, with what, what never ran).

Nothing here needs pytest: each works in Django's ``TestCase`` as well.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from celery import Celery, Task, current_app

from .models import TaskRunStatus, Workflow, WorkflowStatus


@contextmanager
def eager(app: Celery | None = None, propagates: bool | None = None) -> Iterator[None]:
    """Within the block, ``launch``, ``resume``, ``rerun_from`` and
    ``relaunch`` run the whole workflow inline before they return.

    Same as setting ``CELERY_TASK_ALWAYS_EAGER = True`` in test settings.
    Task errors are recorded on the run, not raised, whatever
    ``task_eager_propagates`` says (``propagates`` sets it for tasks called
    directly in the block).
    """
    conf = (app or current_app).conf
    changes = {"task_always_eager": True}
    if propagates is not None:
        changes["task_eager_propagates"] = propagates
    saved = {key: conf[key] for key in changes}
    conf.update(changes)
    try:
        yield
    finally:
        conf.update(saved)


@contextmanager
def worker(app: Celery | None = None, **options: Any) -> Iterator[Any]:
    """A real Celery worker, in a thread of this process, for the block.

    It consumes the project's broker (``memory://`` works, since it is this
    process), runs one task at a time (``pool="solo"``) and writes through
    its own database connection: use it in a ``TransactionTestCase`` or a
    ``django_db(transaction=True)`` test, where the test's rows are
    committed and visible to it. ``options`` go to Celery's ``start_worker``.
    """
    from celery.contrib.testing.worker import start_worker

    settings = {"pool": "solo", "perform_ping_check": False, "shutdown_timeout": 30, **options}
    with start_worker(app or current_app, **settings) as started:
        yield started


@contextmanager
def stub_task(task: Task | str, returns: Any = None, raises: BaseException | None = None):
    """Within the block, ``task`` returns ``returns`` (or raises ``raises``)
    instead of running its body; the run records it as it would the real one.

    ``task`` is a task or its registered name. Works inline (:func:`eager`)
    and with :func:`worker`, which run in this process; not on a worker
    process started elsewhere.
    """
    target = current_app.tasks[task] if isinstance(task, str) else task

    def body(*args: Any, **kwargs: Any) -> Any:
        if raises is not None:
            raise raises
        return returns

    with mock.patch.object(target, "run", body):
        yield target


def assert_succeeded(workflow: Workflow, result: Any = ...) -> None:
    """Fail with the run's story unless it succeeded (with ``result``, if given)."""
    workflow.refresh_from_db()
    if workflow.status != WorkflowStatus.SUCCESS:
        raise AssertionError(f"Expected run {workflow.pk} to succeed.\n{describe(workflow)}")
    if result is not ... and workflow.result != result:
        raise AssertionError(
            f"Run {workflow.pk} succeeded with {workflow.result!r}, expected {result!r}."
        )


def assert_failed(workflow: Workflow, task: str | None = None) -> None:
    """Fail with the run's story unless it failed (at a task named ``task``,
    if given: its full name or its last dotted part)."""
    workflow.refresh_from_db()
    if workflow.status != WorkflowStatus.FAILURE:
        raise AssertionError(f"Expected run {workflow.pk} to fail.\n{describe(workflow)}")
    if task is not None:
        failed = workflow.task_runs.filter(status=TaskRunStatus.FAILURE, is_hook=False)
        if not any(task in (run.task, run.task.rsplit(".", 1)[-1]) for run in failed):
            raise AssertionError(f"Expected task {task!r} to fail.\n{describe(workflow)}")


def describe(workflow: Workflow) -> str:
    """The run in a few lines: status, each failed task with its error and
    traceback, and what never ran."""
    runs = list(workflow.task_runs.filter(is_hook=False).order_by("node"))
    lines = [
        f"Run {workflow.pk} ({workflow.name}) is {workflow.status}: "
        f"{workflow.tasks_finished}/{workflow.tasks_total} tasks finished."
    ]
    if not workflow.is_finished:
        lines.append(
            "It has not finished: is a worker running it? In tests, run it inline "
            "(django_workflows.testing.eager) or with django_workflows.testing.worker."
        )
    for run in runs:
        if run.status == TaskRunStatus.FAILURE:
            lines.append(
                f"- node {run.node} {run.task} failed: {run.exception_type}: "
                f"{run.exception_message}"
            )
            if run.traceback:
                lines.append("  " + run.traceback.strip().replace("\n", "\n  "))
    never = [
        f"node {run.node} {run.task} ({run.status})"
        for run in runs
        if run.status
        in {TaskRunStatus.UPSTREAM_FAILED, TaskRunStatus.CANCELED, TaskRunStatus.PENDING}
    ]
    if never:
        lines.append("Never ran: " + ", ".join(never))
    return "\n".join(lines)
