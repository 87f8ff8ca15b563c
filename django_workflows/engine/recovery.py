"""Recovery: task runs whose worker is gone, or that ran too long, fail visibly.

Run from beat (``django_workflows.reap``) or ``manage.py workflows reap``.
A reaped task run fails like any other, so its run fails and can be resumed.
"""

import logging
from datetime import timedelta

from celery import current_app
from django.utils import timezone

from ..models import TaskRun
from ..models import TaskRunStatus as T
from .progress import task_failed

logger = logging.getLogger(__name__)


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
