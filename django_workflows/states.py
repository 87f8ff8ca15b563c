"""The allowed status transitions, in one table.

Every status write in the app goes through :func:`move_tasks` or
:func:`move_workflow`: a conditional UPDATE from an allowed previous state.
Nothing reads a status, decides, and writes it back, so two workers (or a
worker and an operator) racing on the same row cannot both win.
"""

from typing import Any

from django.db.models import QuerySet

from .models import TaskRunStatus as T
from .models import WorkflowStatus as W

#: target status -> statuses a task run may be in to move there
TASK_TRANSITIONS: dict[str, frozenset[str]] = {
    T.QUEUED: frozenset({T.PENDING}),  # claimed for dispatch
    T.RUNNING: frozenset({T.QUEUED, T.RETRYING}),  # a worker started it
    T.RETRYING: frozenset({T.RUNNING}),  # self.retry / autoretry_for
    T.SUCCESS: frozenset({T.QUEUED, T.RUNNING, T.RETRYING}),
    T.FAILURE: frozenset({T.QUEUED, T.RUNNING, T.RETRYING}),
    T.UPSTREAM_FAILED: frozenset({T.PENDING}),  # an ancestor failed
    T.CANCELED: frozenset({T.PENDING, T.QUEUED, T.RUNNING, T.RETRYING}),
    T.PENDING: frozenset({T.FAILURE, T.UPSTREAM_FAILED, T.CANCELED}),  # resume
}

#: target status -> statuses a workflow may be in to move there
WORKFLOW_TRANSITIONS: dict[str, frozenset[str]] = {
    W.RUNNING: frozenset({W.PENDING, W.FAILURE, W.CANCELED}),
    W.SUCCESS: frozenset({W.RUNNING}),
    W.FAILURE: frozenset({W.PENDING, W.RUNNING}),
    W.CANCELED: frozenset({W.PENDING, W.RUNNING}),
}

ACTIVE_TASK = frozenset({T.QUEUED, T.RUNNING, T.RETRYING})


def move_tasks(queryset: QuerySet, to: str, **fields: Any) -> int:
    """Move the task runs of ``queryset`` that may go to ``to``; return how many did."""
    return queryset.filter(status__in=TASK_TRANSITIONS[to]).update(status=to, **fields)


def move_workflow(queryset: QuerySet, to: str, **fields: Any) -> int:
    """Move the workflows of ``queryset`` that may go to ``to``; return how many did."""
    return queryset.filter(status__in=WORKFLOW_TRANSITIONS[to]).update(status=to, **fields)
