"""``Task.replace`` inside a run: the replacement becomes task runs of the run.

Natively Celery sends the replacement canvas with the replaced task's id and
drops the task. In a workflow the replacement is compiled like any canvas
and its nodes join the run under the replaced task run, as a foreach's items
do (``mapped_from``): each is tracked, drawn and resumable. The replaced
task run goes back to pending, waiting for the replacement's last tasks;
when they have succeeded, it succeeds with the replacement's result, read
as Celery reads it, and its children go on.
"""

import uuid
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..canvas import compile_canvas
from ..models import TaskRun
from ..models import TaskRunStatus as T
from . import counters
from .graph import parents_of, reserve_nodes, save_edges, task_run
from .transitions import move_tasks


def expand(task_id: str, workflow_id: str, signature: Any, attempt: Any) -> list[TaskRun]:
    """Save the replacement of running task run ``task_id``; return its first
    tasks, claimed for sending (none if ``attempt`` is no longer current).

    Raises :class:`~django_workflows.exceptions.CanvasError` for a canvas
    the engine cannot run and :class:`NodeLimitExceeded` past ``MAX_NODES``:
    the replaced task fails with that error.
    """
    graph = compile_canvas(signature)
    has_children = {parent for node in graph.nodes for parent in node.parents}
    last = [node.index for node in graph.nodes if node.index not in has_children]
    with transaction.atomic():
        offset = reserve_nodes(workflow_id, len(graph.nodes), f"Replacing task run {task_id} adds")
        replaced = TaskRun.objects.filter(pk=task_id)
        if attempt is not None:
            replaced = replaced.filter(claim=attempt)
        if not move_tasks(
            replaced,
            T.PENDING,
            from_={T.RUNNING},
            waiting=len(last),
            map_size=len(graph.nodes),
            replacement=_shift(graph.result, offset),
            claim=None,
        ):
            return []  # canceled, or a stale attempt: the replacement is dropped
        now, claim = timezone.now(), uuid.uuid4()
        runs = []
        for position, node in enumerate(graph.nodes):
            node.index += offset
            node.input = _shift(node.input, offset)
            node.parents = [parent + offset for parent in node.parents]
            runs.append(
                task_run(
                    node,
                    workflow_id,
                    mapped_from_id=task_id,
                    map_index=position,
                    waiting=len(node.parents),
                    status=T.PENDING if node.parents else T.QUEUED,
                    queued_at=None if node.parents else now,
                    claim=None if node.parents else claim,
                )
            )
        TaskRun.objects.bulk_create(runs, batch_size=500)
        outside = parents_of(task_id)
        save_edges(
            [
                *(
                    (runs[node.index - offset].pk, runs[parent - offset].pk)
                    for node in graph.nodes
                    for parent in node.parents
                ),
                # Drawn from the replaced task's parents, into the replaced task.
                *((run.pk, parent) for run in runs if not run.waiting for parent in outside),
                *((task_id, runs[index].pk) for index in last),
            ]
        )
        counters.count(workflow_id, total=len(runs))
    return [run for run in runs if not run.waiting]


def _shift(ref: Any, offset: int) -> Any:
    """A result or input reference of the replacement, in the run's node numbers."""
    if ref is None:
        return None
    if isinstance(ref, list):
        return [_shift(item, offset) for item in ref]
    return ref + offset
