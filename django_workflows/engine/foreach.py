"""foreach nodes at run time: one task run per item, then their results gathered.

When a foreach node's input is ready it does not run a task: it expands
into one queued task run per item and goes back to pending, waiting for
them; the last item to succeed claims it like any join, and its result is
the items' results in item order. This module writes the rows;
:mod:`.progress` sends the items and records the node's outcome.
"""

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..canvas import Node
from ..exceptions import NodeLimitExceeded
from ..models import TaskRun
from ..models import TaskRunStatus as T
from . import counters
from .graph import parents_of, reserve_nodes, save_edges, task_run
from .transitions import move_tasks


@dataclass
class Expansion:
    """What expanding a foreach node gave: items to send, or why the node fails."""

    items: list[TaskRun] = field(default_factory=list)
    error: BaseException | None = None


def expand(run: TaskRun, items: Any) -> Expansion | None:
    """Save a queued task run per item of ``items`` (the node's input).

    An empty list saves nothing (the node succeeds with ``[]``); anything
    but a list, or more items than ``MAX_NODES`` allows, is an error. None
    means the node is no longer this sender's to expand (its run was
    canceled since it was claimed): nothing is saved.
    """
    if not isinstance(items, list):
        return Expansion(
            error=TypeError(
                f"foreach({run.task}) maps over a list, but the previous step "
                f"returned {type(items).__name__}: {items!r:.200}"
            )
        )
    if not items:
        TaskRun.objects.filter(pk=run.pk).update(map_size=0)
        return Expansion()
    with transaction.atomic():
        try:
            first = reserve_nodes(
                run.workflow_id, len(items), f"foreach({run.task}) would expand into"
            )
        except NodeLimitExceeded as exc:
            return Expansion(error=exc)
        # The node goes back to pending to wait for its items, if it is still
        # queued under the claim it was sent with; a cancel moved it otherwise.
        if not move_tasks(
            TaskRun.objects.filter(pk=run.pk, claim=run.claim),
            T.PENDING,
            from_={T.QUEUED},
            waiting=len(items),
            map_size=len(items),
            claim=None,
        ):
            return None
        return Expansion(items=_add_items(run, items, first))


def _add_items(run: TaskRun, items: list, first: int) -> list[TaskRun]:
    """Save the items, numbered from ``first``, and their edges (the node's
    parents -> item -> node)."""
    now, claim = timezone.now(), uuid.uuid4()
    children = [
        task_run(
            Node(
                index=first + index,
                task=run.task,
                args=[item, *run.args],
                kwargs=run.kwargs,
                options=run.options,
                immutable=False,
                input=None,
            ),
            run.workflow_id,
            mapped_from_id=run.pk,
            map_index=index,
            status=T.QUEUED,
            queued_at=now,
            claim=claim,
        )
        for index, item in enumerate(items)
    ]
    TaskRun.objects.bulk_create(children, batch_size=500)
    parents = parents_of(run.pk)
    save_edges(
        [
            *((child.pk, parent) for child in children for parent in parents),
            *((run.pk, child.pk) for child in children),
        ]
    )
    counters.count(run.workflow_id, total=len(children))
    return children


def gather(run: TaskRun) -> list[Any]:
    """Every item succeeded: their results, in item order, are the node's result."""
    return list(
        TaskRun.objects.filter(mapped_from=run)
        .order_by("map_index")
        .values_list("result", flat=True)
    )
