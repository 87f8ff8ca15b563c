"""The engine: launch a run, then advance or fail it as its tasks finish.

Event-driven: the worker that finishes a task claims the children whose
parents have now all succeeded (a conditional UPDATE, so a join is claimed
by exactly one of its parents) and sends them at once, with the results
Celery would have passed them. No processor task, no polling.
"""

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from celery import current_app
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from kombu.exceptions import OperationalError

from .canvas import Dag, compile_canvas, referenced, resolve
from .codec import round_trip
from .definitions import registry
from .exceptions import BrokerUnavailable
from .models import TaskRun, Workflow
from .models import TaskRunStatus as T
from .models import WorkflowStatus as W
from .states import move_tasks, move_workflow

logger = logging.getLogger(__name__)

#: Message headers that mark a task as a node of a workflow run.
RUN_HEADER = "django_workflows_run"
NODE_HEADER = "django_workflows_node"

Edge = TaskRun.parents.through


# -- launch -------------------------------------------------------------------


def launch(name: str, payload: Any = None, *, user: Any = None) -> Workflow:
    """Start a run of the registered workflow ``name`` with ``payload``.

    Raises :class:`~django_workflows.exceptions.UnknownWorkflow` or
    :class:`~django_workflows.exceptions.InvalidPayload` before anything is
    saved. The first tasks are sent when the current transaction commits.
    """
    definition = registry.get(name)
    payload = {} if payload is None else payload
    definition.validate(payload)
    dag = compile_canvas(definition.build(payload))
    return _create(dag, name=name, payload=payload, user=user)


def launch_canvas(
    canvas: Any, *, name: str = "adhoc", payload: Any = None, user: Any = None
) -> Workflow:
    """Start a tracked run of any Celery canvas, without registering it."""
    dag = compile_canvas(canvas)
    return _create(dag, name=name, payload={} if payload is None else payload, user=user)


def _create(dag: Dag, *, name: str, payload: Any, user: Any) -> Workflow:
    """Save the run and its whole DAG in one transaction; send the roots on commit."""
    now = timezone.now()
    with transaction.atomic():
        workflow = Workflow.objects.create(
            name=name,
            payload=payload,
            launched_by=user if getattr(user, "is_authenticated", False) else None,
            result_ref=dag.result,
            tasks_total=len(dag.nodes),
        )
        runs = [
            TaskRun(
                workflow=workflow,
                node=node.index,
                task=node.task,
                args=node.args,
                kwargs=node.kwargs,
                options=node.options,
                immutable=node.immutable,
                input=node.input,
                waiting=len(node.parents),
                # Roots are claimed by the launch itself: nobody else sees them yet.
                status=T.PENDING if node.parents else T.QUEUED,
                queued_at=None if node.parents else now,
            )
            for node in dag.nodes
        ]
        TaskRun.objects.bulk_create(runs, batch_size=500)
        Edge.objects.bulk_create(
            (
                Edge(from_taskrun_id=runs[node.index].pk, to_taskrun_id=runs[parent].pk)
                for node in dag.nodes
                for parent in node.parents
            ),
            batch_size=500,
        )
        roots = [run for run in runs if not run.waiting]
        transaction.on_commit(lambda: _start(workflow, roots))
    return workflow


def _start(workflow: Workflow, roots: list[TaskRun]) -> None:
    now = timezone.now()
    move_workflow(Workflow.objects.filter(pk=workflow.pk), W.RUNNING, started=now)
    workflow.status, workflow.started = W.RUNNING, now
    if not roots:
        _finish_if_done(workflow.pk)
        workflow.refresh_from_db()
        return
    try:
        dispatch(roots, {})
    except OperationalError as exc:
        message = f"The broker could not be reached to send the first tasks: {exc}"
        _abort(workflow, message)
        raise BrokerUnavailable(message) from exc


def _abort(workflow: Workflow, message: str) -> None:
    """Record that a run could not start, so it never looks alive."""
    now = timezone.now()
    runs = TaskRun.objects.filter(workflow=workflow)
    failed = move_tasks(
        runs.filter(status=T.QUEUED),
        T.FAILURE,
        exception_type=BrokerUnavailable.__name__,
        exception_message=message,
        finished_at=now,
    )
    skipped = move_tasks(runs, T.UPSTREAM_FAILED, finished_at=now)
    Workflow.objects.filter(pk=workflow.pk).update(
        tasks_finished=F("tasks_finished") + failed + skipped,
        tasks_failed=F("tasks_failed") + failed,
    )
    move_workflow(Workflow.objects.filter(pk=workflow.pk), W.FAILURE, error=message, finished=now)
    workflow.refresh_from_db()


# -- dispatch -------------------------------------------------------------------


def dispatch(runs: Iterable[TaskRun], results: dict[int, Any]) -> None:
    """Send claimed task runs, each with the input Celery would have given it.

    ``results`` maps node index -> result for the results already at hand;
    the others the inputs need are read from the database in one query.
    """
    runs = list(runs)
    needed = set().union(*(referenced(run.input) for run in runs)) - results.keys()
    if needed:
        workflow_id = runs[0].workflow_id
        results = {
            **results,
            **dict(
                TaskRun.objects.filter(workflow_id=workflow_id, node__in=needed).values_list(
                    "node", "result"
                )
            ),
        }
    app = current_app
    with app.producer_or_acquire() as producer:
        for run in runs:
            args = run.args if run.input is None else [resolve(run.input, results), *run.args]
            options = dict(run.options)
            headers = {
                **options.pop("headers", {}),
                RUN_HEADER: str(run.workflow_id),
                NODE_HEADER: run.node,
            }
            app.signature(run.task, args=args, kwargs=run.kwargs, options=options).apply_async(
                task_id=str(run.pk), headers=headers, producer=producer
            )


# -- transitions reported by the worker --------------------------------------------


def task_started(task_id: str, worker: str) -> None:
    move_tasks(
        TaskRun.objects.filter(pk=task_id),
        T.RUNNING,
        started_at=timezone.now(),
        worker=worker or "",
        attempts=F("attempts") + 1,
    )


def task_retrying(task_id: str, exception: BaseException | None, traceback: str = "") -> None:
    move_tasks(
        TaskRun.objects.filter(pk=task_id),
        T.RETRYING,
        **_exception_fields(exception, traceback),
    )


def task_succeeded(task_id: str, workflow_id: str, node: int, value: Any) -> None:
    """Store the result, then claim and send the children it made ready."""
    try:
        result = round_trip(value)
    except (TypeError, ValueError) as exc:
        error = TypeError(
            f"The task returned a value that the JSON serializer cannot carry "
            f"({type(value).__name__}): {exc}"
        )
        task_failed(task_id, error)
        return
    now = timezone.now()
    if not move_tasks(
        TaskRun.objects.filter(pk=task_id), T.SUCCESS, result=result, finished_at=now
    ):
        return  # already recorded (a redelivered message) or canceled
    Workflow.objects.filter(pk=workflow_id).update(
        tasks_finished=F("tasks_finished") + 1, tasks_succeeded=F("tasks_succeeded") + 1
    )
    children = TaskRun.objects.filter(
        pk__in=Edge.objects.filter(to_taskrun_id=task_id).values("from_taskrun_id")
    )
    if children.update(waiting=F("waiting") - 1):
        claim = uuid.uuid4()
        if move_tasks(children.filter(waiting=0), T.QUEUED, queued_at=now, claim=claim):
            ready = TaskRun.objects.filter(workflow_id=workflow_id, claim=claim)
            dispatch(ready, {node: result})
            return  # a child is queued: the run cannot be finished
    _finish_if_done(workflow_id)


def task_failed(task_id: str, exception: BaseException | None, traceback: str = "") -> None:
    """Record the failure; every descendant becomes upstream_failed at once."""
    now = timezone.now()
    failed = move_tasks(
        TaskRun.objects.filter(pk=task_id),
        T.FAILURE,
        finished_at=now,
        **_exception_fields(exception, traceback),
    )
    if not failed:
        return  # not a workflow task, or already finished
    workflow_id = TaskRun.objects.filter(pk=task_id).values_list("workflow_id", flat=True).get()
    doomed = descendants(workflow_id, task_id)
    skipped = (
        move_tasks(TaskRun.objects.filter(pk__in=doomed), T.UPSTREAM_FAILED, finished_at=now)
        if doomed
        else 0
    )
    Workflow.objects.filter(pk=workflow_id).update(
        tasks_finished=F("tasks_finished") + 1 + skipped, tasks_failed=F("tasks_failed") + 1
    )
    _finish_if_done(workflow_id)


def descendants(workflow_id: Any, task_id: Any) -> list:
    """Ids of every task run downstream of ``task_id`` (one query for the edges)."""
    children = defaultdict(list)
    for child, parent in Edge.objects.filter(from_taskrun__workflow_id=workflow_id).values_list(
        "from_taskrun_id", "to_taskrun_id"
    ):
        children[parent].append(child)
    seen: set = set()
    frontier = [uuid.UUID(str(task_id))]
    while frontier:
        frontier = [c for p in frontier for c in children[p] if c not in seen]
        seen.update(frontier)
    return list(seen)


def _finish_if_done(workflow_id: Any) -> None:
    """Close the run when its counters say every task has finished."""
    row = (
        Workflow.objects.filter(pk=workflow_id, status=W.RUNNING)
        .values("tasks_total", "tasks_finished", "tasks_failed", "result_ref")
        .first()
    )
    if row is None or row["tasks_finished"] < row["tasks_total"]:
        return
    run = Workflow.objects.filter(pk=workflow_id)
    now = timezone.now()
    if row["tasks_failed"]:
        move_workflow(run, W.FAILURE, finished=now)
        return
    ref = row["result_ref"]
    nodes = referenced(ref)
    results = dict(
        TaskRun.objects.filter(workflow_id=workflow_id, node__in=nodes).values_list(
            "node", "result"
        )
    )
    move_workflow(run, W.SUCCESS, result=resolve(ref, results), finished=now)


def _exception_fields(exception: BaseException | None, traceback: str) -> dict[str, str]:
    if exception is None:
        return {"traceback": traceback or ""}
    return {
        "exception_type": type(exception).__name__,
        "exception_message": str(exception),
        "traceback": traceback or "",
    }
