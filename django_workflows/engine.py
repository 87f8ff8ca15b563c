"""The engine: launch a run, advance or fail it as its tasks finish, and the
operations on a run (resume, rerun_from, mark_success, relaunch, cancel, reap).

Event-driven: the worker that finishes a task claims the children whose
parents have now all succeeded (a conditional UPDATE, so a join is claimed
by exactly one of its parents) and sends them at once, with the results
Celery would have passed them. No processor task, no polling. Every status
write is a guarded transition from :mod:`django_workflows.states`.
"""

import logging
import uuid
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from graphlib import TopologicalSorter
from typing import Any

from celery import current_app
from django.db import IntegrityError, transaction
from django.db.models import F, Max
from django.utils import timezone
from kombu.exceptions import OperationalError

from .canvas import Dag, Node, compile_canvas, referenced, resolve
from .codec import decode, encode, round_trip
from .conf import get_setting
from .definitions import registry
from .exceptions import (
    BrokerUnavailable,
    InvalidPayload,
    InvalidState,
    NativeCeleryWarning,
    NodeLimitExceeded,
    ResultTooLarge,
)
from .models import TaskAttempt, TaskRun, Workflow
from .models import TaskRunStatus as T
from .models import WorkflowStatus as W
from .signals import task_run_changed, workflow_finished, workflow_started
from .states import (
    ACTIVE_TASK,
    FAILED_TASK,
    FINISHED_TASK,
    move_tasks,
    move_workflow,
    start,
    succeed,
)

logger = logging.getLogger(__name__)

#: Message headers that mark a task as part of a workflow run.
RUN_HEADER = "django_workflows_run"
NODE_HEADER = "django_workflows_node"
HOOK_HEADER = "django_workflows_hook"

Edge = TaskRun.parents.through


# -- launch -------------------------------------------------------------------------


def launch(
    name: str,
    payload: Any = None,
    *,
    user: Any = None,
    idempotency_key: str | None = None,
    relaunched_from: Workflow | None = None,
    schedule: Any = None,
) -> Workflow:
    """Start a run of the registered workflow ``name`` with ``payload``.

    Raises :class:`~django_workflows.exceptions.UnknownWorkflow` or
    :class:`~django_workflows.exceptions.InvalidPayload` before anything is
    saved. The first tasks are sent when the current transaction commits.
    With ``idempotency_key``, a run of ``name`` launched with the same key
    is returned instead of a new one, also under concurrent launches.
    """
    definition = registry.get(name)
    payload = {} if payload is None else payload
    if idempotency_key and (existing := _existing(name, idempotency_key)):
        return existing
    _check_payload(name, payload)
    definition.validate(payload)
    dag = compile_canvas(definition.build(payload))
    return _create(
        dag,
        name=name,
        payload=payload,
        user=user,
        idempotency_key=idempotency_key or "",
        relaunched_from=relaunched_from,
        schedule=schedule,
    )


def launch_canvas(
    canvas: Any,
    *,
    name: str = "adhoc",
    payload: Any = None,
    user: Any = None,
    idempotency_key: str | None = None,
) -> Workflow:
    """Start a tracked run of any Celery canvas, without registering it."""
    if idempotency_key and (existing := _existing(name, idempotency_key)):
        return existing
    _check_payload(name, payload)
    dag = compile_canvas(canvas)
    return _create(
        dag,
        name=name,
        payload={} if payload is None else payload,
        user=user,
        idempotency_key=idempotency_key or "",
    )


def _check_payload(name: str, payload: Any) -> None:
    """The payload must be JSON, and no larger than MAX_PAYLOAD_SIZE bytes."""
    try:
        size = len(encode(payload).encode())
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(name, [{"path": "", "message": f"Not JSON: {exc}"}]) from exc
    limit = get_setting("MAX_PAYLOAD_SIZE")
    if limit is not None and size > limit:
        message = (
            f"The payload is {size} bytes as JSON; the limit is {limit} "
            "(DJANGO_WORKFLOWS['MAX_PAYLOAD_SIZE'])."
        )
        raise InvalidPayload(name, [{"path": "", "message": message}])


def _existing(name: str, key: str) -> Workflow | None:
    return Workflow.objects.filter(name=name, idempotency_key=key).first()


def _create(dag: Dag, *, name: str, payload: Any, user: Any, **fields: Any) -> Workflow:
    """Save the run and its whole DAG in one transaction; send the roots on commit."""
    limit = get_setting("MAX_NODES")
    if limit is not None and len(dag.nodes) > limit:
        raise NodeLimitExceeded(
            f"Workflow {name!r} has {len(dag.nodes)} tasks; the limit is {limit} "
            "(DJANGO_WORKFLOWS['MAX_NODES'])."
        )
    for warning in dag.native_warnings:
        logger.warning("Workflow %r: %s", name, warning)
        warnings.warn(f"Workflow {name!r}: {warning}", NativeCeleryWarning, stacklevel=4)
    now = timezone.now()
    try:
        with transaction.atomic():
            workflow = Workflow.objects.create(
                name=name,
                payload=payload,
                launched_by=user if getattr(user, "is_authenticated", False) else None,
                result_ref=dag.result,
                tasks_total=len(dag.nodes),
                **fields,
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
                    is_map=node.map,
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
    except IntegrityError:
        key = fields.get("idempotency_key")
        if key and (existing := _existing(name, key)):
            return existing  # a concurrent launch with the same key won
        raise
    return workflow


def _start(workflow: Workflow, roots: list[TaskRun]) -> None:
    now = timezone.now()
    move_workflow(
        Workflow.objects.filter(pk=workflow.pk), W.RUNNING, from_={W.PENDING}, started=now
    )
    workflow.status, workflow.started = W.RUNNING, now
    workflow_started.send(Workflow, workflow_id=workflow.pk, name=workflow.name, resumed=False)
    if not roots:
        _finish_if_done(workflow.pk)
        workflow.refresh_from_db()
        return
    try:
        dispatch(roots, {})
    except BrokerUnavailable as exc:
        # dispatch failed every root it could not send: the run is a failure now.
        message = f"The broker could not be reached to send the first tasks: {exc.__cause__}"
        Workflow.objects.filter(pk=workflow.pk).update(error=message)
        workflow.refresh_from_db()
        error = BrokerUnavailable(message)
        error.workflow = workflow
        raise error from exc.__cause__


# -- dispatch -------------------------------------------------------------------------


def dispatch(runs: Iterable[TaskRun], results: dict[int, Any]) -> None:
    """Send claimed task runs, each with the input Celery would have given it.

    ``results`` maps node index -> result for the results already at hand;
    the others the inputs need are read from the database in one query.
    """
    runs = list(runs)
    if not runs:
        return
    needed = set().union(*(referenced(run.input) for run in runs)) - results.keys()
    if needed:
        results = {**results, **_results(runs[0].workflow_id, needed)}
    maps = [run for run in runs if run.is_map]
    if maps:
        runs = [run for run in runs if not run.is_map]
        _send(runs, results)
        for run in maps:
            if run.map_size is None:
                _expand(run, resolve(run.input, results))
            else:
                _gather(run)
        return
    _send(runs, results)


def _send(runs: list[TaskRun], results: dict[int, Any]) -> None:
    app = current_app
    with app.producer_or_acquire() as producer:
        for position, run in enumerate(runs):
            args = run.args if run.input is None else [resolve(run.input, results), *run.args]
            options = dict(run.options)
            headers = {**options.pop("headers", {}), RUN_HEADER: str(run.workflow_id)}
            headers[HOOK_HEADER if run.is_hook else NODE_HEADER] = run.node
            signature = app.signature(run.task, args=args, kwargs=run.kwargs, options=options)
            try:
                signature.apply_async(task_id=str(run.pk), headers=headers, producer=producer)
            except OperationalError as exc:
                # Nothing more can be sent: fail what was claimed, so no run looks alive.
                for unsent in runs[position:]:
                    task_failed(str(unsent.pk), exc)
                raise BrokerUnavailable(f"The broker could not be reached: {exc}") from exc
            except Exception as exc:  # e.g. TypeError: the arguments do not fit the task
                logger.warning("Could not send task run %s (%s): %r", run.pk, run.task, exc)
                task_failed(str(run.pk), exc)


def _expand(run: TaskRun, items: Any) -> None:
    """A foreach node's input is ready: one queued task run per item, sent now.

    The node itself goes back to pending, waiting for its items; the last
    item to succeed claims it like any join, and :func:`_gather` completes it.
    """
    if not isinstance(items, list):
        task_failed(
            str(run.pk),
            TypeError(
                f"foreach({run.task}) maps over a list, but the previous step "
                f"returned {type(items).__name__}: {items!r:.200}"
            ),
        )
        return
    if not items:
        TaskRun.objects.filter(pk=run.pk).update(map_size=0)
        task_succeeded(str(run.pk), str(run.workflow_id), run.node, [])
        return
    now = timezone.now()
    with transaction.atomic():
        # One expansion at a time per run: node numbers are allocated here.
        total = (
            Workflow.objects.select_for_update()
            .filter(pk=run.workflow_id)
            .values_list("tasks_total", flat=True)
            .get()
        )
        limit = get_setting("MAX_NODES")
        if limit is not None and total + len(items) > limit:
            too_many = NodeLimitExceeded(
                f"foreach({run.task}) would expand into {len(items)} task runs, "
                f"{total + len(items)} in this run: the limit is {limit} "
                "(DJANGO_WORKFLOWS['MAX_NODES'])."
            )
        else:
            too_many = None
            children = _add_items(run, items, now)
    if too_many:
        task_failed(str(run.pk), too_many)
        return
    _changed(run.workflow_id, [child.pk for child in children], T.QUEUED)
    dispatch(children, {})


def _add_items(run: TaskRun, items: list, now: Any) -> list[TaskRun]:
    """Save a foreach node's items (returned) and their edges; the node waits for them."""
    first = TaskRun.objects.filter(workflow_id=run.workflow_id).aggregate(last=Max("node"))
    base = first["last"] + 1
    parents = list(
        Edge.objects.filter(from_taskrun_id=run.pk).values_list("to_taskrun_id", flat=True)
    )
    children = [
        TaskRun(
            workflow_id=run.workflow_id,
            node=base + index,
            task=run.task,
            args=[item, *run.args],
            kwargs=run.kwargs,
            options=run.options,
            mapped_from_id=run.pk,
            map_index=index,
            status=T.QUEUED,
            queued_at=now,
        )
        for index, item in enumerate(items)
    ]
    TaskRun.objects.bulk_create(children, batch_size=500)
    Edge.objects.bulk_create(
        [
            *(
                Edge(from_taskrun_id=child.pk, to_taskrun_id=parent)
                for child in children
                for parent in parents
            ),
            *(Edge(from_taskrun_id=run.pk, to_taskrun_id=child.pk) for child in children),
        ],
        batch_size=500,
    )
    move_tasks(
        TaskRun.objects.filter(pk=run.pk),
        T.PENDING,
        from_={T.QUEUED},
        waiting=len(children),
        map_size=len(children),
        claim=None,
    )
    Workflow.objects.filter(pk=run.workflow_id).update(tasks_total=F("tasks_total") + len(children))
    return children


def _gather(run: TaskRun) -> None:
    """Every item of a foreach node succeeded: their results, in order, are its result."""
    results = list(
        TaskRun.objects.filter(mapped_from=run)
        .order_by("map_index")
        .values_list("result", flat=True)
    )
    task_succeeded(str(run.pk), str(run.workflow_id), run.node, results)


def _results(workflow_id: Any, nodes: Iterable[int]) -> dict[int, Any]:
    return dict(
        TaskRun.objects.filter(workflow_id=workflow_id, node__in=nodes).values_list(
            "node", "result"
        )
    )


def _changed(workflow_id: Any, ids: Iterable[Any], status: str) -> None:
    task_run_changed.send(TaskRun, workflow_id=workflow_id, task_run_ids=list(ids), status=status)


# -- transitions reported by the worker ------------------------------------------------


def task_started(task_id: str, workflow_id: str, worker: str, retries: int = 0) -> bool:
    """Record the start; ``False`` means the task must not run (canceled, done)."""
    started = start(task_id, started_at=timezone.now(), worker=worker or "", retries=retries)
    if started:
        _changed(workflow_id, [task_id], T.RUNNING)
    return started


def task_retrying(
    task_id: str, retries: int, exception: BaseException | None, traceback: str = ""
) -> None:
    """Attempt ``retries + 1`` failed and is retried.

    Celery sends the retry's message before it reports the retry, so the
    next attempt may already have started: the status only moves if the row
    still belongs to the attempt that failed.
    """
    fields = _exception_fields(exception, traceback)
    run = TaskRun.objects.filter(pk=task_id).only("workflow_id", "worker", "started_at").first()
    if run is None:
        return
    TaskAttempt.objects.create(
        task_run_id=task_id,
        attempt=retries + 1,
        status=T.RETRYING,
        worker=run.worker,
        started_at=run.started_at,
        **fields,
    )
    if move_tasks(TaskRun.objects.filter(pk=task_id, retries=retries), T.RETRYING, **fields):
        _changed(run.workflow_id, [task_id], T.RETRYING)


def task_succeeded(task_id: str, workflow_id: str, node: int, value: Any) -> None:
    """Store the result, then claim and send the children it made ready."""
    try:
        text = encode(value)
    except (TypeError, ValueError) as exc:
        error = TypeError(
            f"The task returned a value that the JSON serializer cannot carry "
            f"({type(value).__name__}): {exc}"
        )
        task_failed(task_id, error)
        return
    limit = get_setting("MAX_RESULT_SIZE")
    if limit is not None and len(text) > limit:  # ASCII: characters are bytes
        task_failed(
            task_id,
            ResultTooLarge(
                f"The result is {len(text)} bytes as JSON; the limit is {limit} "
                "(DJANGO_WORKFLOWS['MAX_RESULT_SIZE']). Store large data elsewhere "
                "(a file, a table) and return a reference to it."
            ),
        )
        return
    result = decode(text)
    done = succeed(
        task_id,
        workflow_id,
        result=result,
        result_json=text,
        finished_at=timezone.now(),
        claim=uuid.uuid4(),
    )
    if done is None:
        return  # already recorded (a message delivered twice), or canceled
    _changed(workflow_id, [task_id], T.SUCCESS)
    if done.claimed:
        _changed(workflow_id, [r.pk for r in done.claimed], T.QUEUED)
        dispatch(done.claimed, {node: result})
        return  # a child is queued: the run cannot be finished
    if done.may_finish:
        _finish_if_done(workflow_id)


def hook_succeeded(task_id: str, value: Any) -> None:
    """A hook's run is recorded; it never changes its workflow's outcome."""
    try:
        result = round_trip(value)
    except (TypeError, ValueError):
        result = repr(value)
    move_tasks(
        TaskRun.objects.filter(pk=task_id),
        T.SUCCESS,
        from_=ACTIVE_TASK,
        result=result,
        finished_at=timezone.now(),
    )


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
        return  # not a workflow task, or already finished (or canceled)
    run = TaskRun.objects.get(pk=task_id)
    _record_attempt(run, T.FAILURE)
    _changed(run.workflow_id, [task_id], T.FAILURE)
    if run.is_hook:
        return
    doomed = descendants(run.workflow_id, [run.pk])
    skipped = (
        move_tasks(TaskRun.objects.filter(pk__in=doomed), T.UPSTREAM_FAILED, finished_at=now)
        if doomed
        else 0
    )
    if skipped:
        _changed(run.workflow_id, doomed, T.UPSTREAM_FAILED)
    Workflow.objects.filter(pk=run.workflow_id).update(
        tasks_finished=F("tasks_finished") + 1 + skipped, tasks_failed=F("tasks_failed") + 1
    )
    _finish_if_done(run.workflow_id)


def _record_attempt(run: TaskRun, status: str) -> None:
    TaskAttempt.objects.create(
        task_run=run,
        attempt=run.attempts,
        status=status,
        exception_type=run.exception_type,
        exception_message=run.exception_message,
        traceback=run.traceback,
        worker=run.worker,
        started_at=run.started_at,
    )


def _edges(workflow_id: Any) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(child, parent) pairs of a run, in one query."""
    return list(
        Edge.objects.filter(from_taskrun__workflow_id=workflow_id).values_list(
            "from_taskrun_id", "to_taskrun_id"
        )
    )


def descendants(workflow_id: Any, task_ids: Iterable[Any]) -> list:
    """Ids of every task run downstream of ``task_ids``."""
    children = defaultdict(list)
    for child, parent in _edges(workflow_id):
        children[parent].append(child)
    seen: set = set()
    frontier = [uuid.UUID(str(t)) for t in task_ids]
    while frontier:
        frontier = [c for p in frontier for c in children[p] if c not in seen]
        seen.update(frontier)
    return list(seen)


def _finish_if_done(workflow_id: Any) -> None:
    """Close the run when its counters say every task has finished."""
    row = (
        Workflow.objects.filter(pk=workflow_id, status=W.RUNNING)
        .values("name", "tasks_total", "tasks_finished", "tasks_failed", "result_ref")
        .first()
    )
    if row is None or row["tasks_finished"] < row["tasks_total"]:
        return
    run = Workflow.objects.filter(pk=workflow_id)
    now = timezone.now()
    if row["tasks_failed"]:
        status, result = W.FAILURE, None
        moved = move_workflow(run, W.FAILURE, finished=now)
    else:
        status = W.SUCCESS
        result = resolve(row["result_ref"], _results(workflow_id, referenced(row["result_ref"])))
        moved = move_workflow(run, W.SUCCESS, result=result, finished=now)
    if moved:
        workflow_finished.send(Workflow, workflow_id=workflow_id, name=row["name"], status=status)
        _call_hook(workflow_id, row["name"], status, result)


def _call_hook(workflow_id: Any, name: str, status: str, result: Any) -> None:
    """Send the definition's on_success / on_failure hook as a recorded task run."""
    definition = registry._definitions.get(name)
    hook = definition and (definition.on_success if status == W.SUCCESS else definition.on_failure)
    if not hook:
        return
    if status == W.SUCCESS:
        argument = result
    else:
        failed = (
            TaskRun.objects.filter(workflow_id=workflow_id, status=T.FAILURE, is_hook=False)
            .order_by("finished_at")
            .first()
        )
        argument = failed and {
            "task_run": str(failed.pk),
            "task": failed.task,
            "exception_type": failed.exception_type,
            "exception_message": failed.exception_message,
        }
    last = TaskRun.objects.filter(workflow_id=workflow_id).aggregate(last=Max("node"))["last"]
    run = TaskRun.objects.create(
        workflow_id=workflow_id,
        node=last + 1,
        task=hook.task,
        args=[str(workflow_id), argument, *hook.args],
        kwargs=dict(hook.kwargs),
        options={k: v for k, v in hook.options.items() if k in ("queue", "priority")},
        is_hook=True,
        status=T.QUEUED,
        queued_at=timezone.now(),
    )
    try:
        dispatch([run], {})
    except OperationalError:
        logger.exception("Could not send the %s hook of workflow %s", status, workflow_id)


def _exception_fields(exception: BaseException | None, traceback: str) -> dict[str, str]:
    if exception is None:
        return {"traceback": traceback or ""}
    return {
        "exception_type": type(exception).__name__,
        "exception_message": str(exception),
        "traceback": traceback or "",
    }


# -- operations -----------------------------------------------------------------------


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
    """Run ``task_run`` and everything downstream of it again, on a finished run."""
    allowed = {W.SUCCESS, W.FAILURE, W.CANCELED}
    workflow.refresh_from_db()
    if workflow.status not in allowed:
        raise _refuse("rerun", workflow, allowed)
    start = uuid.UUID(str(getattr(task_run, "pk", task_run)))
    if not TaskRun.objects.filter(pk=start, workflow=workflow, is_hook=False).exists():
        raise InvalidState(f"Task run {start} is not a task of workflow {workflow.pk}.")
    return _reopen(
        workflow,
        lambda rows: {start, *descendants(workflow.pk, [start])},
        workflow_from=allowed,
        dry_run=dry_run,
    )


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
        Workflow.objects.filter(pk=workflow.pk).update(
            tasks_failed=F("tasks_failed") - 1, tasks_succeeded=F("tasks_succeeded") + 1
        )
        _changed(workflow.pk, [task_run.pk], T.SUCCESS)
        _reopen(
            workflow,
            lambda rows: set(descendants(workflow.pk, [task_run.pk])),
            workflow_from={W.RUNNING, W.FAILURE},
            dry_run=False,
        )
    task_run.refresh_from_db()
    return task_run


def _reopen(workflow: Workflow, select, *, workflow_from: set, dry_run: bool) -> Plan:
    """Put the selected task runs back to pending and send those that are ready.

    A selected node whose parent outside the selection has failed stays as
    it is (upstream_failed); nodes are visited in DAG order (node index).
    """
    rows = {
        row["id"]: row
        for row in TaskRun.objects.filter(workflow=workflow, is_hook=False).values(
            "id", "node", "task", "status", "revoked", "map_size", "mapped_from"
        )
    }
    parents = defaultdict(list)
    for child, parent in _edges(workflow.pk):
        parents[child].append(parent)
    selected = select(rows)
    order = list(TopologicalSorter({pk: parents[pk] for pk in selected}).static_order())

    def reopen(dropped: set) -> tuple[dict, dict]:
        after: dict = {}
        waiting: dict = {}
        for pk in order:
            if pk not in selected or pk in dropped:
                continue
            states = [after.get(p, rows[p]["status"]) for p in parents[pk] if p not in dropped]
            if any(state in FAILED_TASK for state in states):
                continue  # still blocked by a failure outside the selection
            after[pk] = T.PENDING
            waiting[pk] = sum(state != T.SUCCESS for state in states)
        return after, waiting

    after, waiting = reopen(dropped=set())
    # A foreach node whose input runs again expands again, from the new input:
    # its old items go.
    collapsed = {
        pk
        for pk in after
        if rows[pk]["map_size"] is not None
        and any(p in after and rows[p]["mapped_from"] != pk for p in parents[pk])
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
            tasks_total=F("tasks_total") - len(dropped),
            tasks_finished=F("tasks_finished")
            - sum(before.values())
            - sum(n for status, n in gone.items() if status in FINISHED_TASK),
            tasks_failed=F("tasks_failed") - before[T.FAILURE] - gone[T.FAILURE],
            tasks_succeeded=F("tasks_succeeded") - before[T.SUCCESS] - gone[T.SUCCESS],
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
            started_at=None,
            finished_at=None,
        )
        if dropped:
            TaskRun.objects.filter(pk__in=dropped).delete()
            TaskRun.objects.filter(pk__in=collapsed).update(map_size=None)
        by_count = defaultdict(list)
        for pk, count in waiting.items():
            by_count[count].append(pk)
        for count, pks in by_count.items():
            TaskRun.objects.filter(pk__in=pks).update(waiting=count)
        claim = uuid.uuid4()
        move_tasks(TaskRun.objects.filter(pk__in=by_count[0]), T.QUEUED, queued_at=now, claim=claim)
        revoked = [str(pk) for pk in after if rows[pk]["revoked"]]
        transaction.on_commit(lambda: _restart(workflow, claim, revoked))
    workflow.refresh_from_db()
    return plan


def _restart(workflow: Workflow, claim: uuid.UUID, revoked: list[str]) -> None:
    if revoked:
        # Workers remember revoked ids for hours: lift ours before sending them again.
        current_app.control.broadcast(
            "django_workflows_unrevoke", arguments={"task_ids": revoked}, reply=True, timeout=1
        )
    workflow_started.send(Workflow, workflow_id=workflow.pk, name=workflow.name, resumed=True)
    ready = list(TaskRun.objects.filter(workflow=workflow, claim=claim, status=T.QUEUED))
    _changed(workflow.pk, [r.pk for r in ready], T.QUEUED)
    dispatch(ready, {})
    if not ready:
        _finish_if_done(workflow.pk)


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
    node_of = {run.pk: run.node for run in runs}
    parents = defaultdict(list)
    for child, parent in _edges(workflow.pk):
        if child in node_of and parent in node_of:
            parents[child].append(node_of[parent])
    dag = Dag(
        nodes=[
            Node(
                index=run.node,
                task=run.task,
                args=run.args,
                kwargs=run.kwargs,
                options=run.options,
                immutable=run.immutable,
                input=run.input,
                parents=sorted(parents[run.pk]),
                map=run.is_map,
            )
            for run in runs
        ],
        result=workflow.result_ref,
    )
    return _create(
        dag, name=workflow.name, payload=workflow.payload, user=user, relaunched_from=workflow
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
            _record_attempt(run, T.CANCELED)
        Workflow.objects.filter(pk=workflow.pk).update(
            tasks_finished=F("tasks_finished") + canceled
        )
        if terminate and running:
            ids = [str(run.pk) for run in running]
            transaction.on_commit(
                lambda: current_app.control.revoke(ids, terminate=True, signal="SIGTERM")
            )
    _changed(workflow.pk, [*pending, *(r.pk for r in running)], T.CANCELED)
    workflow_finished.send(Workflow, workflow_id=workflow.pk, name=workflow.name, status=W.CANCELED)
    workflow.refresh_from_db()
    return workflow


# -- the reaper -------------------------------------------------------------------------


class WorkerLost(Exception):
    """The worker running a task is gone, or the task ran past its time."""


def reap(grace: float = 30.0, timeout: float | None = None, ping_timeout: float = 2.0) -> list[str]:
    """Fail task runs left running by workers that no longer answer, or for too long.

    ``grace``: only tasks started at least that many seconds ago are checked.
    ``timeout``: tasks running longer than that fail even if their worker
    answers. Returns the ids of the task runs it failed; their workflows fail
    and can be resumed.
    """
    now = timezone.now()
    running = list(
        TaskRun.objects.filter(status=T.RUNNING, started_at__lte=now - timedelta(seconds=grace))
    )
    if not running:
        return []
    alive = set()
    for reply in current_app.control.ping(timeout=ping_timeout) or []:
        alive.update(reply)
    reaped = []
    for run in running:
        if run.worker not in alive:
            reason = f"Worker lost: {run.worker or 'the worker'} does not answer any more."
        elif timeout is not None and run.started_at <= now - timedelta(seconds=timeout):
            reason = f"Timed out: still running after {timeout:g} s on {run.worker}."
        else:
            continue
        logger.warning("Reaping task run %s (%s): %s", run.pk, run.task, reason)
        task_failed(str(run.pk), WorkerLost(reason))
        reaped.append(str(run.pk))
    return reaped
