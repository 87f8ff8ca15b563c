"""A run moving forward: sending claimed task runs, and each outcome a worker reports.

The worker that finishes a task claims the children whose parents have now
all succeeded (a conditional UPDATE, so a join is claimed by exactly one of
its parents) and sends them at once, with the results Celery would have
passed them: no processor task, no polling. A failure marks everything
downstream ``upstream_failed`` at once. When the counters say every task
has finished, the run is closed and its hook sent.

What a send sets off (a foreach node expanding, an empty foreach or a
gathered one succeeding and releasing its own children, a send that fails)
is worked through in :func:`dispatch`'s loop, not by recursion.
"""

import logging
import re
import uuid
from collections import deque
from collections.abc import Iterable
from typing import Any

from celery.exceptions import Reject
from django.db import connection, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from ..canvas import referenced, resolve
from ..codec import decode, encode, round_trip
from ..conf import get_setting
from ..exceptions import BrokerUnavailable, ResultTooLarge
from ..models import TaskAttempt, TaskRun, Workflow
from ..models import TaskRunStatus as T
from ..models import WorkflowStatus as W
from ..signals import task_run_changed, workflow_finished
from . import chords, counters, foreach, hooks, replace, send
from .fastpath import release_children, start, succeed
from .graph import descendants
from .transitions import ACTIVE_TASK, move_tasks, move_workflow

logger = logging.getLogger(__name__)

#: What a recorded success hands on: the children it claimed, and its result.
Step = tuple[list[TaskRun], dict[int, Any]]


def changed(workflow_id: Any, ids: Iterable[Any], status: str) -> None:
    """Tell the project's receivers that task runs moved to ``status``."""
    task_run_changed.send_robust(
        TaskRun, workflow_id=workflow_id, task_run_ids=list(ids), status=status
    )


# -- sending ---------------------------------------------------------------------------


def dispatch(runs: Iterable[TaskRun], results: dict[int, Any]) -> None:
    """Send claimed task runs, each with the input Celery would have given it.

    ``results`` maps node index -> result for the results already at hand;
    the others the inputs need are read from the database in one query. A
    run that cannot be sent (a bad signature) fails; if the broker could not
    be reached, what it did not take stays queued and unsent, for the
    recovery pass, and :class:`BrokerUnavailable` is raised once everything
    else was done.
    """
    work: deque[Step] = deque([(list(runs), results)])
    broker_error = None
    while work:
        batch, known = work.popleft()
        if not batch:
            continue
        known = send.with_inputs(batch, known)
        sent = send.send([run for run in batch if not _expanded(run)], known)
        broker_error = broker_error or _settle(sent)
        for run in (run for run in batch if _expanded(run)):
            if run.replacement is not None:
                # Its replacement has finished: the result is read from it.
                stored = send.results_of(run.workflow_id, referenced(run.replacement))
                value = resolve(run.replacement, stored)
            elif run.map_size is None:
                expansion = foreach.expand(run, resolve(run.input, known))
                if expansion is None:
                    continue  # canceled since it was claimed: nothing to send
                if expansion.error is not None:
                    task_failed(str(run.pk), expansion.error)
                    continue
                if expansion.items:
                    changed(run.workflow_id, [item.pk for item in expansion.items], T.QUEUED)
                    work.append((expansion.items, {}))
                    continue
                value: Any = []
            else:
                value = foreach.gather(run)
            step = _record_success(
                str(run.pk), str(run.workflow_id), run.node, value, attempt=run.claim
            )
            if step:
                work.append(step)
    if broker_error is not None:
        raise BrokerUnavailable(
            f"The broker could not be reached: {broker_error}"
        ) from broker_error


def _settle(sent: send.Sent) -> OperationalError | None:
    """Fail what could not be sent for a reason of its own (a bad signature).

    What the broker did not take stays queued and unsent: the recovery pass
    sends it when the broker is back. Returns the broker's error, if any.
    """
    for run, error in sent.unsent:
        if error is not sent.broker_error:
            task_failed(str(run.pk), error)
    return sent.broker_error


def _send_in_claim(claimed: list[TaskRun], known: dict[int, Any]) -> send.Sent | None:
    """In the transaction that claimed them: send the claimed task runs that go
    as they are (not the expanded ones), before it commits (``send.send_in_claim``)."""
    ready = [run for run in claimed if not _expanded(run)]
    return send.send_in_claim(ready, send.with_inputs(ready, known)) if ready else None


def _expanded(run: TaskRun) -> bool:
    """A foreach node, or a task that replaced itself: the engine decides its
    outcome from the task runs it expanded into; it is never sent as is."""
    return run.is_map or run.replacement is not None


# -- outcomes reported by the worker ---------------------------------------------------


def task_started(
    task_id: str, workflow_id: str, worker: str, retries: int = 0, attempt: Any = None
) -> bool:
    """Record the start; ``False`` means the task must not run (canceled, done,
    or ``attempt`` is a stale dispatch of it)."""
    started = start(
        task_id, started_at=timezone.now(), worker=worker or "", retries=retries, attempt=attempt
    )
    if started:
        changed(workflow_id, [task_id], T.RUNNING)
    return started


def task_replaced(task_id: str, workflow_id: str, signature: Any, attempt: Any = None) -> None:
    """The task replaced itself (``Task.replace``): its replacement joins the
    run under it (:mod:`.replace`), and the replacement's first tasks are sent."""
    first = replace.expand(task_id, workflow_id, signature, attempt)
    if not first:
        return
    changed(workflow_id, [task_id], T.PENDING)
    changed(workflow_id, [run.pk for run in first], T.QUEUED)
    try:
        dispatch(first, {})
    except BrokerUnavailable:
        logger.exception("Could not send the replacement of task run %s", task_id)


def task_added_to_chord(
    task_id: str, workflow_id: str, signature: Any, attempt: Any = None, lazy: bool = False
) -> tuple[list[TaskRun], Any]:
    """The task added ``signature`` to its chord (``Task.add_to_chord``): it
    joins the run (:mod:`.chords`) and its first tasks are sent, unless
    ``lazy``: then they stay claimed and unsent, for :func:`send_claimed`
    (the caller applying the signature) or else the recovery pass. Returns
    those first tasks and the new member's result, as Celery's
    ``add_to_chord`` returns it."""
    first, result = chords.add(task_id, workflow_id, signature, attempt)
    if first:
        changed(workflow_id, [run.pk for run in first], T.QUEUED)
    if first and not lazy:
        try:
            dispatch(first, {})
        except BrokerUnavailable:
            logger.exception("Could not send what task run %s added to its chord", task_id)
    return first, result


def send_claimed(runs: list[TaskRun], options: dict[str, Any] | None = None) -> None:
    """Send task runs claimed and left unsent (``add_to_chord(sig, lazy=True)``):
    those still queued, unsent, with the same claim. What a recovery pass
    claimed again meanwhile is its to send; what was sent is not sent twice.
    ``options`` (Celery's ``apply_async`` options) go with these messages."""
    claims = {run.pk: run.claim for run in runs}
    ready = [
        run
        for run in TaskRun.objects.filter(pk__in=claims, status=T.QUEUED, sent_at=None)
        if run.claim == claims[run.pk]
    ]
    for run in ready:
        run.options = {**run.options, **(options or {})}
    if ready:
        dispatch(ready, {})


def release_held(workflow_id: Any, nodes: list[int]) -> None:
    """A chord's header read after launch is read to its end: its body
    (``nodes``, held by the launch) waits no more for it, and is claimed and
    sent if its members have all succeeded."""
    claim, now = uuid.uuid4(), timezone.now()
    with transaction.atomic():
        if not unhold(workflow_id, nodes):
            return  # the recovery pass failed the body: the reader was taken for gone
        held = TaskRun.objects.filter(workflow_id=workflow_id, node__in=nodes)
        release_children(held, claim=claim, queued_at=now)
        claimed = list(held.filter(claim=claim, status=T.QUEUED))
        sent = _send_in_claim(claimed, {})
    if claimed:
        changed(workflow_id, [run.pk for run in claimed], T.QUEUED)
    if sent is not None and _settle(sent) is not None:
        logger.error("Could not send chord body %s: the recovery pass will", nodes)
    expanded = [run for run in claimed if _expanded(run)]
    if expanded:
        dispatch(expanded, {})


def unhold(workflow_id: Any, nodes: list[int]) -> bool:
    """Chord bodies ``nodes`` wait no more for their header to be read: off
    the run's ``headers_held`` (and its ``header_read_at`` with the last).
    False if they were not held (the recovery pass took them)."""
    with transaction.atomic():
        run = Workflow.objects.select_for_update().filter(pk=workflow_id)
        held = run.values_list("headers_held", flat=True).first()
        if not held or not set(nodes) <= set(held):
            return False
        left = [node for node in held if node not in nodes] or None
        run.update(headers_held=left, **({} if left else {"header_read_at": None}))
    return True


def task_retrying(
    task_id: str,
    retries: int,
    exception: BaseException | None,
    traceback: str = "",
    attempt: Any = None,
) -> None:
    """Attempt ``retries + 1`` failed and is retried.

    Celery sends the retry's message before it reports the retry, so the
    next attempt may already have started: the status only moves if the row
    still belongs to the attempt that failed.
    """
    fields = exception_fields(exception, traceback)
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
    current = TaskRun.objects.filter(pk=task_id, retries=retries, **_of(attempt))
    # queued_at: when Celery queued the retry (the recovery pass's QUEUE_TIMEOUT counts from it).
    if move_tasks(current, T.RETRYING, queued_at=timezone.now(), **fields):
        changed(run.workflow_id, [task_id], T.RETRYING)


def task_succeeded(
    task_id: str, workflow_id: str, node: int, value: Any, attempt: Any = None
) -> None:
    """Store the result, then claim and send the children it made ready.

    A report of a stale ``attempt`` (an older dispatch) changes nothing.
    """
    step = _record_success(task_id, workflow_id, node, value, attempt)
    if step:
        try:
            dispatch(*step)
        except BrokerUnavailable:
            # What could not be sent is the recovery pass's to send: the run is not stuck.
            logger.exception("Could not send the children of task run %s", task_id)


def _record_success(
    task_id: str, workflow_id: str, node: int, value: Any, attempt: Any = None
) -> Step | None:
    """Store the result and count it; return the children it claimed, if any."""
    try:
        text = encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        reason = "it is nested too deep" if isinstance(exc, RecursionError) else exc
        error = TypeError(
            f"The task returned a value that the JSON serializer cannot carry "
            f"({type(value).__name__}): {reason}"
        )
        task_failed(task_id, error, attempt=attempt)
        return None
    if has_nul(text) and connection.vendor == "postgresql":
        task_failed(
            task_id,
            ValueError(
                "The task returned a value holding a NUL character (\\u0000), which "
                "PostgreSQL's jsonb cannot store: remove it, or encode the data."
            ),
            attempt=attempt,
        )
        return None
    limit = get_setting("MAX_RESULT_SIZE")
    if limit is not None and len(text) > limit:  # ASCII: characters are bytes
        task_failed(
            task_id,
            ResultTooLarge(
                f"The result is {len(text)} bytes as JSON; the limit is {limit} "
                "(DJANGO_WORKFLOWS['MAX_RESULT_SIZE']). Store large data elsewhere "
                "(a file, a table) and return a reference to it."
            ),
            attempt=attempt,
        )
        return None
    # What the child receives, as Celery's JSON would deliver it; a value
    # JSON carries unchanged needs no decoding.
    result = value if type(value) in _UNCHANGED_BY_JSON else decode(text)
    known = {node: result}
    # The success, its claims and the claimed children's messages: one
    # transaction, sent before it commits (see send.send_in_claim).
    with transaction.atomic():
        done = succeed(
            task_id,
            workflow_id,
            result=result,
            result_json=text,
            finished_at=timezone.now(),
            claim=uuid.uuid4(),
            attempt=attempt,
        )
        if done is None:
            return None  # already recorded (a message delivered twice), canceled, or stale
        sent = _send_in_claim(done.claimed, known)
    changed(workflow_id, [task_id], T.SUCCESS)
    if done.claimed:
        changed(workflow_id, [r.pk for r in done.claimed], T.QUEUED)
    if sent is not None and _settle(sent) is not None:
        logger.error(
            "Could not send the children of task run %s (%s): the recovery pass will",
            task_id,
            sent.broker_error,
        )
    expanded = [run for run in done.claimed if _expanded(run)]
    if expanded:
        return expanded, known  # a foreach node, or a replaced task, to work out
    if not done.claimed and done.may_finish:
        finish_if_done(workflow_id)
    return None


#: The types a JSON round trip gives back as they were (exactly these: a
#: subclass, an enum say, comes back as its base type).
_UNCHANGED_BY_JSON = frozenset({type(None), bool, int, float, str})


def hook_succeeded(task_id: str, value: Any) -> None:
    """A hook's run is recorded; it never changes its workflow's outcome."""
    try:
        result = round_trip(value)
    except (TypeError, ValueError, RecursionError):
        result = repr(value)
    move_tasks(
        TaskRun.objects.filter(pk=task_id),
        T.SUCCESS,
        from_=ACTIVE_TASK,
        result=result,
        finished_at=timezone.now(),
    )


def task_failed(
    task_id: str,
    exception: BaseException | None,
    traceback: str = "",
    attempt: Any = None,
    *,
    from_: Iterable[str] = ACTIVE_TASK,
) -> None:
    """Record the failure; every descendant becomes upstream_failed at once.

    A report of a stale ``attempt`` (an older dispatch) changes nothing; nor
    does one of a task run not in ``from_`` (a pending task run fails only
    when the launch says so: a chord's header generator raised). A
    retry Celery could not publish (the broker is down: Celery rejects the
    task) is no failure: the task run goes back to the outbox, for the
    recovery pass to send again once the broker is back.
    """
    now = timezone.now()
    if _unpublished_retry(exception):
        with transaction.atomic():
            if move_tasks(
                TaskRun.objects.filter(pk=task_id, **_of(attempt)),
                T.QUEUED,
                from_={T.RUNNING, T.RETRYING},
                claim=uuid.uuid4(),
                queued_at=now,
                sent_at=None,
                **exception_fields(exception, traceback),
            ):
                run = TaskRun.objects.get(pk=task_id)
                record_attempt(run, T.RETRYING)
                changed(run.workflow_id, [task_id], T.QUEUED)
        return
    # One transaction: a report made again after a dropped connection
    # (tracking retries it) finds either nothing done or everything counted.
    with transaction.atomic():
        failed = move_tasks(
            TaskRun.objects.filter(pk=task_id, **_of(attempt)),
            T.FAILURE,
            from_=from_,
            finished_at=now,
            **exception_fields(exception, traceback),
        )
        if not failed:
            return  # not a workflow task, or already finished (or canceled)
        run = TaskRun.objects.get(pk=task_id)
        record_attempt(run, T.FAILURE)
        doomed = [] if run.is_hook else descendants(run.workflow_id, [run.pk])
        bodies = chords.failing_bodies(run) if doomed else []
        skipped = (
            move_tasks(TaskRun.objects.filter(pk__in=doomed), T.UPSTREAM_FAILED, finished_at=now)
            if doomed
            else 0
        )
        if not run.is_hook:
            counters.count(run.workflow_id, finished=1 + skipped, failed=1)
    changed(run.workflow_id, [task_id], T.FAILURE)
    if run.is_hook:
        return
    if skipped:
        changed(run.workflow_id, doomed, T.UPSTREAM_FAILED)
    if bodies:
        chords.call_body_errbacks(bodies, run, exception)
    finish_if_done(run.workflow_id)


def _unpublished_retry(exception: BaseException | None) -> bool:
    """Celery's ``Task.retry`` could not send the retry's message: it raises
    ``Reject(broker error, requeue=False)``."""
    return isinstance(exception, Reject) and isinstance(
        exception.reason, (OperationalError, ConnectionError)
    )


def _of(attempt: Any) -> dict[str, Any]:
    """The filter that keeps a report to its own dispatch attempt (none: any)."""
    return {} if attempt is None else {"claim": attempt}


def record_attempt(run: TaskRun, status: str) -> None:
    """Keep the attempt that just ended (its error, worker, start) in the history."""
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


def exception_fields(exception: BaseException | None, traceback: str) -> dict[str, str]:
    """An error as text columns take it: NUL characters (which PostgreSQL's
    text refuses) written as ``\\x00``."""
    fields = {"traceback": _text(traceback or "")}
    if exception is not None:
        fields["exception_type"] = _text(type(exception).__name__)
        fields["exception_message"] = _text(str(exception))
    return fields


def _text(value: str) -> str:
    return value.replace("\x00", "\\x00")


#: A JSON text holding a NUL: ``\u0000`` not itself escaped (an odd number of
#: backslashes before the ``u``).
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def has_nul(text: str) -> bool:
    """Whether JSON ``text`` holds a NUL character somewhere in its strings."""
    return "\\u0000" in text and _NUL.search(text) is not None


# -- finishing ---------------------------------------------------------------------------


def finish_if_done(workflow_id: Any) -> None:
    """Close the run when its counters say every task has finished; send its hook."""
    row = (
        Workflow.objects.filter(pk=workflow_id, status=W.RUNNING)
        .values("name", "tasks_total", "tasks_finished", "tasks_failed", "result_ref", "hooks")
        .first()
    )
    if row is None or row["tasks_finished"] < row["tasks_total"]:
        return
    run = Workflow.objects.filter(pk=workflow_id)
    now = timezone.now()
    # The run is closed with its hook saved (queued, claimed) or not at all: a
    # process dying in between would leave a closed run whose hook never runs.
    # Either way the recovery pass takes over (it closes a run whose tasks all
    # finished, and sends a task run claimed and not sent).
    with transaction.atomic():
        if row["tasks_failed"]:
            status, result = W.FAILURE, None
            moved = move_workflow(run, W.FAILURE, finished=now)
        else:
            status = W.SUCCESS
            stored = send.results_of(workflow_id, referenced(row["result_ref"]))
            result = resolve(row["result_ref"], stored)
            moved = move_workflow(run, W.SUCCESS, result=result, finished=now)
        if not moved:
            return
        hook = hooks.create(workflow_id, row["name"], status, result, row["hooks"])
    workflow_finished.send_robust(
        Workflow, workflow_id=workflow_id, name=row["name"], status=status
    )
    if hook is not None:
        try:
            dispatch([hook], {})
        except BrokerUnavailable:
            logger.exception("Could not send the %s hook of workflow %s", status, workflow_id)
