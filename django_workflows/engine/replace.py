"""``Task.replace`` inside a run: the replacement becomes task runs of the run.

Natively Celery sends the replacement canvas with the replaced task's id and
drops the task. In a workflow the replacement is compiled like any canvas
and its nodes join the run under the replaced task run, as a foreach's items
do (``mapped_from``): each is tracked, drawn and resumable. The replaced
task run goes back to pending, waiting for the replacement's last tasks;
when they have succeeded, it succeeds with the replacement's result, read
as Celery reads it, and its children go on.
"""

from typing import Any

from django.db import transaction

from ..canvas import compile_canvas
from ..models import TaskRun
from ..models import TaskRunStatus as T
from .graph import ends, graft, move, reserve_nodes
from .transitions import move_tasks


def expand(task_id: str, workflow_id: str, signature: Any, attempt: Any) -> list[TaskRun]:
    """Save the replacement of running task run ``task_id``; return its first
    tasks, claimed for sending (none if ``attempt`` is no longer current).

    Raises :class:`~django_workflows.exceptions.CanvasError` for a canvas
    the engine cannot run and :class:`NodeLimitExceeded` past ``MAX_NODES``:
    the replaced task fails with that error.
    """
    graph = compile_canvas(signature)
    last = ends(graph)
    with transaction.atomic():
        adding = f"Replacing task run {task_id} adds"
        move(graph, reserve_nodes(workflow_id, len(graph.nodes), adding))
        replaced = TaskRun.objects.filter(pk=task_id)
        if attempt is not None:
            replaced = replaced.filter(claim=attempt)
        if not move_tasks(
            replaced,
            T.PENDING,
            from_={T.RUNNING},
            waiting=len(last),
            map_size=len(graph.nodes),
            replacement=graph.result,
            claim=None,
        ):
            return []  # canceled, or a stale attempt: the replacement is dropped
        # Drawn from the replaced task's parents, into the replaced task.
        runs = graft(graph, workflow_id, beside=task_id, into=[task_id], mapped_from_id=task_id)
    return [run for run in runs if not run.waiting]
