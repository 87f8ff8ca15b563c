"""Recovery: what a dead or failing process left, moved on.

- :func:`recover` starts runs whose launch committed but never started
  them, fails the chord bodies whose header generator nobody reads any
  more, closes runs whose every task finished but whose last report died
  before closing them, and sends what was claimed and never sent (the
  outbox: a queued task run whose message never reached the broker,
  because the process that claimed it died or failed between its commit
  and the send).
- :func:`reap` fails task runs whose worker is gone, or that ran too long;
  a reaped task run fails like any other, so its run can be resumed.

Both run from beat (``django_workflows.reap``) or ``manage.py workflows reap``.
"""

import logging
import uuid
from collections import defaultdict
from datetime import timedelta
from typing import Any

from celery import current_app
from django.db.models import F, Q
from django.utils import timezone

from ..exceptions import BrokerUnavailable
from ..models import TaskRun, Workflow
from ..models import TaskRunStatus as T
from ..models import WorkflowStatus as W
from .launch import mark_started
from .progress import dispatch, finish_if_done, hook_succeeded, task_failed, task_succeeded
from .transitions import move_tasks

logger = logging.getLogger(__name__)


def recover(grace: float = 60.0, queue_timeout: float | None = None) -> list[str]:
    """Close the runs whose tasks have all finished, then send the task runs
    claimed at least ``grace`` seconds ago and never sent, and, with
    ``queue_timeout``, those sent that long ago that never started (a message
    the broker lost).

    Before that, a launch's own process is taken for gone after ``grace``
    seconds: a run still pending that long after its launch is started (the
    process died, or an earlier ``on_commit`` callback raised, between the
    launch's commit and its start); a chord body still waiting that long
    since its header generator's last member was read fails (the process
    reading it died).

    A run is closed by the report of its last task; when that report's
    process died or lost its database between recording the task and
    closing the run, the counters say finished and the run says running.

    Each is claimed again with a new dispatch attempt in one conditional
    UPDATE (two passes at once cannot both take a row), so should the first
    sender's message turn up after all, it is stale and skipped: the task
    runs once. A task run whose message was sent and waits in a long queue
    is marked sent and never sent again. Returns the ids sent.
    """
    _start_unstarted(timezone.now() - timedelta(seconds=grace))
    _fail_unread_headers(grace)
    for workflow_id in Workflow.objects.filter(
        status=W.RUNNING, tasks_finished__gte=F("tasks_total")
    ).values_list("pk", flat=True):
        finish_if_done(workflow_id)  # guarded: a run is closed once
    now = timezone.now()
    claim = uuid.uuid4()
    unsent = Q(sent_at=None, queued_at__lte=now - timedelta(seconds=grace))
    lost = 0
    if queue_timeout is not None:
        late = now - timedelta(seconds=queue_timeout)
        unsent |= Q(sent_at__lte=late)
        # Celery's own retry message, lost the same way (it is Celery's to send).
        lost = move_tasks(
            TaskRun.objects.filter(queued_at__lte=late),
            T.QUEUED,
            from_={T.RETRYING},
            claim=claim,
            queued_at=now,
            sent_at=None,
        )
    if not lost + TaskRun.objects.filter(unsent, status=T.QUEUED).update(
        claim=claim, queued_at=now, sent_at=None
    ):
        return []
    by_run = defaultdict(list)
    for run in TaskRun.objects.filter(claim=claim, status=T.QUEUED):
        by_run[run.workflow_id].append(run)
    sent = []
    for workflow_id, runs in by_run.items():
        logger.warning(
            "Recovering %d task run(s) of workflow %s claimed and never sent: %s",
            len(runs),
            workflow_id,
            ", ".join(str(run.pk) for run in runs),
        )
        try:
            dispatch(runs, {})
        except BrokerUnavailable:
            logger.exception("Could not send the recovered task runs of workflow %s", workflow_id)
        sent.extend(str(run.pk) for run in runs)
    return sent


def _start_unstarted(launched_before: Any) -> None:
    """Start the runs launched before then and still pending: their launch's
    start never ran. Their first tasks are in the outbox, sent next."""
    for workflow_id, name in Workflow.objects.filter(
        status=W.PENDING, created__lte=launched_before
    ).values_list("pk", "name"):
        if mark_started(workflow_id, name, timezone.now()):
            logger.warning(
                "Starting workflow %s: the process that launched it did not start it", workflow_id
            )


class HeaderUnread(Exception):
    """A chord's header given as a generator was not read to its end: the
    process reading it (the launch's) is gone."""


def _fail_unread_headers(grace: float) -> None:
    """Fail the chord bodies held for a header generator of which no member
    was read for ``grace`` seconds. A reader that was only slow reads no
    further: the member it reads next finds the body failed
    (:func:`.launch.read_header`)."""
    read_before = timezone.now() - timedelta(seconds=grace)
    for workflow_id, held in Workflow.objects.filter(
        status__in=(W.PENDING, W.RUNNING), header_read_at__lte=read_before
    ).values_list("pk", "headers_held"):
        error = HeaderUnread(
            f"The chord's header (a generator) was not read to its end: no member was read "
            f"for {grace:g} s, and the process reading it is taken for gone."
        )
        logger.warning("Workflow %s: %s", workflow_id, error)
        for pk in TaskRun.objects.filter(
            workflow_id=workflow_id, node__in=held or (), status=T.PENDING
        ).values_list("pk", flat=True):
            task_failed(str(pk), error, from_={T.PENDING})
        # Once the bodies failed: a pass that dies before this line fails nothing twice.
        Workflow.objects.filter(pk=workflow_id, header_read_at__lte=read_before).update(
            headers_held=None, header_read_at=None
        )


class WorkerLost(Exception):
    """The worker running a task is gone, or the task ran past its time."""


def reap(grace: float = 30.0, timeout: float | None = None, ping_timeout: float = 2.0) -> list[str]:
    """Settle task runs left running by workers that lost them, or for too long.

    ``grace``: only tasks started at least that many seconds ago are checked.
    A task run is lost when its worker no longer answers, or answers without
    holding it (the pool process running it died); ``timeout``: tasks running
    longer than that fail even if their worker answers. A lost task whose
    success Celery had stored before its process died (Celery then
    acknowledges the message and signals nothing) succeeds with the stored
    result; any other fails, and its workflow can be resumed. Returns the
    ids of the task runs it settled.
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
    now = timezone.now()  # after the ping: a run's time is judged as the workers answered
    reaped, lost, answered_for = [], {}, []
    for run in running:
        if run.worker not in alive:
            lost[run.pk] = f"Worker lost: {run.worker or 'the worker'} does not answer any more."
        elif timeout is not None and run.started_at <= now - timedelta(seconds=timeout):
            reason = f"Timed out: still running after {timeout:g} s on {run.worker}."
            logger.warning("Reaping task run %s (%s): %s", run.pk, run.task, reason)
            task_failed(str(run.pk), WorkerLost(reason), attempt=run.claim)
            reaped.append(str(run.pk))
        else:
            answered_for.append(run)
    if answered_for:
        held = _held({run.worker for run in answered_for}, ping_timeout)
        for run in answered_for:
            if held is not None and str(run.pk) not in held:
                lost[run.pk] = (
                    f"Worker lost: {run.worker} answers but does not hold the task any more."
                )
    # Asking the workers takes a while: what finished or started again meanwhile is left alone.
    still = set(
        TaskRun.objects.filter(pk__in=list(lost), status=T.RUNNING).values_list("pk", "claim")
    )
    for run in running:
        if run.pk not in lost or (run.pk, run.claim) not in still:
            continue
        stored = _stored_success(run)
        if stored is not None:
            logger.warning(
                "Task run %s (%s) succeeded before its worker lost it: recording the result "
                "Celery stored",
                run.pk,
                run.task,
            )
            if run.is_hook:
                hook_succeeded(str(run.pk), stored[0])
            else:
                task_succeeded(str(run.pk), str(run.workflow_id), run.node, stored[0], run.claim)
        else:
            logger.warning("Reaping task run %s (%s): %s", run.pk, run.task, lost[run.pk])
            task_failed(str(run.pk), WorkerLost(lost[run.pk]), attempt=run.claim)
        reaped.append(str(run.pk))
    return reaped


def _held(workers: set[str], timeout: float) -> set[str] | None:
    """The ids of the tasks ``workers`` are running or hold reserved; None if
    one of them did not say (then nobody is judged on it)."""
    if not workers:
        return set()
    inspect = current_app.control.inspect(destination=sorted(workers), timeout=timeout)
    held: set[str] = set()
    for replies in (inspect.active(), inspect.reserved()):
        if not replies or not workers <= set(replies):
            return None
        held.update(task["id"] for tasks in replies.values() for task in tasks)
    return held


def _stored_success(run: TaskRun) -> tuple[Any] | None:
    """``(result,)`` if Celery's result backend holds this task's success."""
    try:
        meta = current_app.backend.get_task_meta(str(run.pk))
    except Exception:  # the backend is down, or keeps nothing (DisabledBackend)
        return None
    if meta.get("status") != "SUCCESS":
        return None
    return (meta.get("result"),)
