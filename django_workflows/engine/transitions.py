"""The allowed status transitions, in one table.

Every status write in the app goes through :func:`move_tasks` or
:func:`move_workflow` (or, on the hot path, :mod:`.fastpath`'s SQL, which
asserts it stays within this table): a conditional UPDATE from an allowed
previous state.
Nothing reads a status, decides, and writes it back, so two workers (or a
worker and an operator) racing on the same row cannot both win: the UPDATE
that finds the row no longer in a source state changes nothing and says so.
"""

from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet

from ..models import TaskRunStatus as T
from ..models import WorkflowStatus as W

#: target status -> statuses a task run may leave for it, and who does it
TASK_TRANSITIONS: dict[str, frozenset[str]] = {
    # claimed for dispatch (launch, a parent, resume); a retry whose message was lost
    # (QUEUE_TIMEOUT) or could not be published (broker down): back to the outbox
    T.QUEUED: frozenset({T.PENDING, T.RETRYING, T.RUNNING}),
    # a worker starts it: a retry, or a message delivered again after a lost worker
    T.RUNNING: frozenset({T.QUEUED, T.RETRYING, T.RUNNING}),
    T.RETRYING: frozenset({T.RUNNING}),  # self.retry / autoretry_for
    # the worker reports success; an operator marks a failed task as succeeded
    T.SUCCESS: frozenset({T.QUEUED, T.RUNNING, T.RETRYING, T.FAILURE}),
    # worker, reaper, broker down; a chord's body when its header's generator raised
    T.FAILURE: frozenset({T.QUEUED, T.RUNNING, T.RETRYING, T.PENDING}),
    T.UPSTREAM_FAILED: frozenset({T.PENDING}),  # an ancestor failed
    T.CANCELED: frozenset({T.PENDING, T.QUEUED, T.RUNNING, T.RETRYING}),  # cancel
    # resume (failure, upstream_failed, canceled) and rerun_from (success too);
    # a foreach node, once expanded, waits for its items (queued); a task that
    # replaced itself (Task.replace) waits for its replacement (running)
    T.PENDING: frozenset(
        {T.FAILURE, T.UPSTREAM_FAILED, T.CANCELED, T.SUCCESS, T.QUEUED, T.RUNNING}
    ),
}

#: target status -> statuses a workflow may leave for it
WORKFLOW_TRANSITIONS: dict[str, frozenset[str]] = {
    # launch; resume; rerun_from on a finished run; mark_success (the run may
    # still be running other branches: it stays running, with new counters)
    W.RUNNING: frozenset({W.PENDING, W.FAILURE, W.CANCELED, W.SUCCESS, W.RUNNING}),
    W.SUCCESS: frozenset({W.RUNNING}),
    W.FAILURE: frozenset({W.PENDING, W.RUNNING}),
    W.CANCELED: frozenset({W.PENDING, W.RUNNING}),
}

ACTIVE_TASK = frozenset({T.QUEUED, T.RUNNING, T.RETRYING})
FINISHED_TASK = frozenset({T.SUCCESS, T.FAILURE, T.UPSTREAM_FAILED, T.CANCELED})
FAILED_TASK = frozenset({T.FAILURE, T.UPSTREAM_FAILED, T.CANCELED})


def _sources(table: dict, to: str, from_: Iterable[str] | None) -> frozenset[str]:
    allowed = table[to]
    if from_ is None:
        return allowed
    sources = frozenset(from_)
    if not sources <= allowed:
        raise ValueError(f"Transition {sorted(sources - allowed)} -> {to} is not in the table.")
    return sources


def move_tasks(
    queryset: QuerySet, to: str, *, from_: Iterable[str] | None = None, **fields: Any
) -> int:
    """Move the task runs of ``queryset`` that are in ``from_`` (default: any
    allowed source) to ``to``; return how many moved."""
    sources = _sources(TASK_TRANSITIONS, to, from_)
    return queryset.filter(status__in=sources).update(status=to, **fields)


def move_workflow(
    queryset: QuerySet, to: str, *, from_: Iterable[str] | None = None, **fields: Any
) -> int:
    """Move the workflows of ``queryset`` that are in ``from_`` to ``to``; return how many."""
    sources = _sources(WORKFLOW_TRANSITIONS, to, from_)
    return queryset.filter(status__in=sources).update(status=to, **fields)
