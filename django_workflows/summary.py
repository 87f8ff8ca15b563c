"""What the top of a run's page says: how it went, and when it failed, why and what next.

Read on every poll of a running run and once for a finished one: a few
indexed queries (the failure summary's plan reads the run's rows once).
"""

from typing import Any

from django.utils import timezone

from .exceptions import WorkflowError
from .models import TaskRun, Workflow
from .models import TaskRunStatus as T
from .models import WorkflowStatus as W

#: Failed (and never-run) tasks listed by name; the rest are counted.
LISTED = 10


def duration(run: Workflow) -> float | None:
    """Seconds from start to finish, or to now while the run goes on."""
    if not run.started:
        return None
    return ((run.finished or timezone.now()) - run.started).total_seconds()


def operations(run: Workflow) -> list[str]:
    """The run-wide operations its state allows, in the order the page shows them."""
    allowed = []
    if run.status in (W.FAILURE, W.CANCELED):
        allowed.append("resume")
    if run.is_finished:
        allowed.append("relaunch")
    else:
        allowed.append("cancel")
    return allowed


def failure_summary(run: Workflow, plan: bool = True) -> dict[str, Any] | None:
    """A failed or canceled run's story: the failed tasks with their exception, what
    never ran because of them, what was canceled, and what a resume would run again.

    None for any other run.
    """
    if run.status not in (W.FAILURE, W.CANCELED):
        return None
    runs = TaskRun.objects.filter(workflow=run).order_by("node")
    failed = runs.filter(status=T.FAILURE)
    columns = ("id", "node", "task", "is_hook", "exception_type", "exception_message")
    summary = {
        "failed": list(failed.values(*columns)[:LISTED]),
        "failed_count": failed.count(),
        "upstream_failed": list(runs.filter(status=T.UPSTREAM_FAILED).values(*columns)[:LISTED]),
        "upstream_failed_count": runs.filter(status=T.UPSTREAM_FAILED).count(),
        "canceled_count": runs.filter(status=T.CANCELED).count(),
        "plan": None,
    }
    if plan:
        try:
            summary["plan"] = run.resume(dry_run=True)
        except WorkflowError:  # the run moved on meanwhile: no plan to show
            pass
    return summary
