"""Operations on a run: resume, rerun_from, mark_success, relaunch, cancel.

Each is a guarded move of the run (refused with :class:`InvalidState`
naming the state it needs), done in one transaction; what becomes ready is
sent when it commits. Nothing is erased: a task run put back to pending
keeps its attempt history, and stored results are reused, never recomputed.
"""

import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from typing import Any

from celery import current_app
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from ..canvas import Graph
from ..codec import round_trip
from ..definitions import registry
from ..exceptions import InvalidState
from ..models import TaskAttempt, TaskRun, Workflow
from ..models import TaskRunStatus as T
from ..models import WorkflowStatus as W
from ..signals import workflow_finished, workflow_started
from . import counters, eager, progress
from .graph import descendants, edges, node_of, parents_by_child
from .launch import create, launch
from .transitions import FAILED_TASK, FINISHED_TASK, move_tasks, move_workflow


@dataclass
class Plan:
    """What an operation runs again and which stored results it reuses."""

    workflow_id: Any
    rerun: list[dict] = field(default_factory=list)
    reused: list[dict] = field(default_factory=list)
    dry_run: bool = False


def _refuse(what: str, obj: Any, needs: Iterable[str]) -> InvalidState:
    kind = "workflow" if isinstance(obj, Workflow) else "task run"
    return InvalidState(
        f"Cannot {what} {kind} {obj.pk}: it is {obj.status} "
        f"({what} needs {' or '.join(sorted(needs))}).",
        status=obj.status,
    )


def resume(workflow: Workflow, dry_run: bool = False) -> Plan:
    """Run again what failed, was skipped or was canceled; reuse what succeeded.

    Allowed on a ``failure`` or ``canceled`` run. With ``dry_run`` nothing
    changes and the plan is returned.
    """
    allowed = {W.FAILURE, W.CANCELED}
    workflow.refresh_from_db()
    if workflow.status not in allowed:
        raise _refuse("resume", workflow, allowed)
    return _reopen(
        workflow,
        lambda rows: {pk for pk, row in rows.items() if row["status"] in FAILED_TASK},
        workflow_from=allowed,
        dry_run=dry_run,
    )


def rerun_from(workflow: Workflow, task_run: TaskRun | str, dry_run: bool = False) -> Plan:
    """Run ``task_run`` and everything downstream of it again, on a finished run.

    With ``dry_run`` nothing changes and the plan is returned.
    """
    allowed = {W.SUCCESS, W.FAILURE, W.CANCELED}
    workflow.refresh_from_db()
    if workflow.status not in allowed:
        raise _refuse("rerun", workflow, allowed)
    start = uuid.UUID(str(getattr(task_run, "pk", task_run)))
    if not TaskRun.objects.filter(pk=start, workflow=workflow, is_hook=False).exists():
        raise InvalidState(f"Task run {start} is not a task of workflow {workflow.pk}.")
    return _reopen(
        workflow,
        lambda rows: _downstream(workflow, start, rows),
        workflow_from=allowed,
        dry_run=dry_run,
        expand_again={start},
    )


def _downstream(workflow: Workflow, start: uuid.UUID, rows: dict) -> set:
    """``start``, its items if it is a foreach node (they are its work) or its
    replacement if it replaced itself, and everything downstream of them."""
    items = {pk for pk, row in rows.items() if row["mapped_from"] == start}
    return {start, *items, *descendants(workflow.pk, [start, *items])}


def mark_success(task_run: TaskRun, result: Any = None) -> TaskRun:
    """Take a failed task as succeeded with ``result``; what it blocked runs."""
    task_run.refresh_from_db()
    if task_run.status != T.FAILURE or task_run.is_hook:
        raise _refuse("mark_success", task_run, {T.FAILURE})
    result = round_trip(result)
    workflow = task_run.workflow
    with transaction.atomic():
        if not move_tasks(
            TaskRun.objects.filter(pk=task_run.pk),
            T.SUCCESS,
            from_={T.FAILURE},
            result=result,
            marked_success=True,
            finished_at=timezone.now(),
        ):
            raise _refuse("mark_success", task_run, {T.FAILURE})
        counters.count(workflow.pk, failed=-1, succeeded=1)
        progress.changed(workflow.pk, [task_run.pk], T.SUCCESS)
        _reopen(
            workflow,
            lambda rows: set(descendants(workflow.pk, [task_run.pk])),
            workflow_from={W.RUNNING, W.FAILURE},
            dry_run=False,
        )
    task_run.refresh_from_db()
    return task_run


def _reopen(
    workflow: Workflow,
    select,
    *,
    workflow_from: set,
    dry_run: bool,
    expand_again: set = frozenset(),
) -> Plan:
    """Put the selected task runs back to pending and send those that are ready.

    A selected node whose parent outside the selection has failed stays as
    it is (upstream_failed); nodes are visited in DAG order (node index). A
    task in ``expand_again`` that replaced itself (Task.replace) runs its
    body again, and its old replacement goes.
    """
    rows = {
        row["id"]: row
        for row in TaskRun.objects.filter(workflow=workflow, is_hook=False).values(
            "id",
            "node",
            "task",
            "status",
            "revoked",
            "map_size",
            "mapped_from",
            "replacement",
        )
    }
    parents = parents_by_child(workflow.pk)
    selected = select(rows)
    order = list(TopologicalSorter({pk: parents[pk] for pk in selected}).static_order())

    def reopen(dropped: set) -> tuple[dict, dict]:
        after: dict = {}
        waiting: dict = {}
        for pk in order:
            if pk not in selected or pk in dropped:
                continue
            states = [after.get(p, rows[p]["status"]) for p in parents[pk] if p not in dropped]
            # Every selected node waits for its parents as they are now, even
            # one left blocked: its parents that run again count down to it.
            waiting[pk] = sum(state != T.SUCCESS for state in states)
            if any(state in FAILED_TASK for state in states):
                continue  # still blocked by a failure outside the selection
            after[pk] = T.PENDING
        return after, waiting

    after, waiting = reopen(dropped=set())
    # A foreach node whose input runs again expands again, from the new input,
    # and so does a task that replaced itself: the old items or replacement go.
    collapsed = {
        pk
        for pk in after
        if rows[pk]["map_size"] is not None
        and (
            any(p in after and rows[p]["mapped_from"] != pk for p in parents[pk])
            or (pk in expand_again and rows[pk]["replacement"] is not None)
        )
    }
    dropped = {pk for pk, row in rows.items() if row["mapped_from"] in collapsed}
    if dropped:
        after, waiting = reopen(dropped)

    def describe(pk):
        row = rows[pk]
        return {"id": str(pk), "node": row["node"], "task": row["task"], "status": row["status"]}

    needed = {p for pk in after for p in parents[pk] if p not in after}
    plan = Plan(
        workflow_id=workflow.pk,
        rerun=[describe(pk) for pk in sorted(after, key=lambda pk: rows[pk]["node"])],
        reused=[describe(pk) for pk in sorted(needed, key=lambda pk: rows[pk]["node"])],
        dry_run=dry_run,
    )
    if dry_run:
        return plan

    before = Counter(rows[pk]["status"] for pk in after)
    gone = Counter(rows[pk]["status"] for pk in dropped)
    now = timezone.now()
    with transaction.atomic():
        if not move_workflow(
            Workflow.objects.filter(pk=workflow.pk),
            W.RUNNING,
            from_=workflow_from,
            finished=None,
            result=None,
            error="",
            **counters.deltas(
                total=-len(dropped),
                finished=-sum(before.values())
                - sum(n for status, n in gone.items() if status in FINISHED_TASK),
                failed=-before[T.FAILURE] - gone[T.FAILURE],
                succeeded=-before[T.SUCCESS] - gone[T.SUCCESS],
            ),
        ):
            workflow.refresh_from_db()
            raise _refuse("reopen", workflow, workflow_from)
        move_tasks(
            TaskRun.objects.filter(pk__in=after),
            T.PENDING,
            result=None,
            exception_type="",
            exception_message="",
            traceback="",
            worker="",
            claim=None,
            revoked=False,
            marked_success=False,
            queued_at=None,
            sent_at=None,
            started_at=None,
            finished_at=None,
        )
        if dropped:
            _keep_history(dropped)
            TaskRun.objects.filter(pk__in=dropped).delete()
            TaskRun.objects.filter(pk__in=collapsed).update(map_size=None, replacement=None)
        by_count = defaultdict(list)
        for pk, count in waiting.items():
            by_count[count].append(pk)
        for count, pks in by_count.items():
            TaskRun.objects.filter(pk__in=pks).update(waiting=count)
        claim = uuid.uuid4()
        move_tasks(TaskRun.objects.filter(pk__in=by_count[0]), T.QUEUED, queued_at=now, claim=claim)
        revoked = [str(pk) for pk in after if rows[pk]["revoked"]]
    eager.after_commit(lambda: _restart(workflow, claim, revoked))
    workflow.refresh_from_db()
    return plan


def _keep_history(items: set) -> None:
    """Before a foreach node's items are replaced, hand their attempt history
    to the node, each attempt marked with its item: nothing is erased."""
    item_of = TaskRun.objects.filter(pk=OuterRef("task_run_id"))
    TaskAttempt.objects.filter(task_run__in=items).update(
        item=Subquery(item_of.values("map_index")),
        task_run_id=Subquery(item_of.values("mapped_from_id")),
    )


def _restart(workflow: Workflow, claim: uuid.UUID, revoked: list[str]) -> None:
    if revoked and not eager.enabled():
        # Workers remember revoked ids for hours: lift ours before sending them again.
        current_app.control.broadcast(
            "django_workflows_unrevoke", arguments={"task_ids": revoked}, reply=True, timeout=1
        )
    workflow_started.send_robust(
        Workflow, workflow_id=workflow.pk, name=workflow.name, resumed=True
    )
    ready = list(TaskRun.objects.filter(workflow=workflow, claim=claim, status=T.QUEUED))
    progress.changed(workflow.pk, [r.pk for r in ready], T.QUEUED)
    progress.dispatch(ready, {})
    if not ready:
        progress.finish_if_done(workflow.pk)


def relaunch(workflow: Workflow, user: Any = None) -> Workflow:
    """A new run of the same definition and payload, linked by ``relaunched_from``.

    A run of a registered definition is built again from it; an ad-hoc run
    (``launch_canvas``) is copied node for node.
    """
    allowed = {W.SUCCESS, W.FAILURE, W.CANCELED}
    workflow.refresh_from_db()
    if workflow.status not in allowed:
        raise _refuse("relaunch", workflow, allowed)
    if workflow.name in registry:
        return launch(workflow.name, workflow.payload, user=user, relaunched_from=workflow)
    # foreach items are not copied: the new run expands its foreach nodes itself.
    runs = list(workflow.task_runs.filter(is_hook=False, mapped_from=None).order_by("node"))
    index = {run.pk: run.node for run in runs}
    parents = defaultdict(list)
    for child, parent in edges(workflow.pk):
        if child in index and parent in index:
            parents[child].append(index[parent])
    graph = Graph(nodes=[node_of(run, parents[run.pk]) for run in runs], result=workflow.result_ref)
    return create(
        graph, name=workflow.name, payload=workflow.payload, user=user, relaunched_from=workflow
    )


def cancel(workflow: Workflow, terminate: bool = False) -> Workflow:
    """Cancel the run: pending and queued tasks will never start, running ones
    finish unrecorded (or are terminated with ``terminate=True``).

    Queued tasks are not revoked: a worker that picks one up finds it
    canceled and skips its body (see ``tracking.guard_before_start``), and
    its id stays usable by ``resume``.
    """
    now = timezone.now()
    with transaction.atomic():
        if not move_workflow(
            Workflow.objects.filter(pk=workflow.pk),
            W.CANCELED,
            from_={W.PENDING, W.RUNNING},
            finished=now,
        ):
            workflow.refresh_from_db()
            raise _refuse("cancel", workflow, {W.PENDING, W.RUNNING})
        tasks = TaskRun.objects.filter(workflow=workflow, is_hook=False)
        running = list(tasks.filter(status__in={T.RUNNING, T.RETRYING}))
        pending = list(tasks.filter(status__in={T.PENDING, T.QUEUED}).values_list("pk", flat=True))
        canceled = move_tasks(
            tasks.filter(pk__in=[r.pk for r in running]),
            T.CANCELED,
            finished_at=now,
            revoked=terminate,
        ) + move_tasks(tasks.filter(pk__in=pending), T.CANCELED, finished_at=now)
        for run in running:
            progress.record_attempt(run, T.CANCELED)
        counters.count(workflow.pk, finished=canceled)
        if terminate and running:
            ids = [str(run.pk) for run in running]
            transaction.on_commit(
                lambda: current_app.control.revoke(ids, terminate=True, signal="SIGTERM")
            )
    progress.changed(workflow.pk, [*pending, *(r.pk for r in running)], T.CANCELED)
    workflow_finished.send_robust(
        Workflow, workflow_id=workflow.pk, name=workflow.name, status=W.CANCELED
    )
    workflow.refresh_from_db()
    return workflow
