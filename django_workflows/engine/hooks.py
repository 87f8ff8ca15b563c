"""A definition's ``on_success`` / ``on_failure`` hook, as a recorded task run.

A hook is a task run of the run (``is_hook``), so it shows in the DAG with
its own status, but it is outside the DAG's outcome: its failure never
changes the run's. A definition written in Python has it called
``hook(workflow_id, result_or_error, *args)``; one from a YAML file as
celery-director calls it: ``hook(None, workflow_id=..., payload=...)`` on success
(director links it after its ``end`` task, whose result is None) and
``hook(workflow_id=..., payload=...)`` on failure.
"""

import uuid
from typing import Any

from django.db.models import Max
from django.utils import timezone

from ..definitions import DIRECTOR, registry
from ..models import TaskRun, Workflow
from ..models import TaskRunStatus as T
from ..models import WorkflowStatus as W


def create(workflow_id: Any, name: str, status: str, result: Any) -> TaskRun | None:
    """Save the hook of definition ``name`` for a run that ended ``status``, queued.

    Returns None when the definition has no hook for that outcome.
    """
    definition = registry.find(name)
    hook = definition and (definition.on_success if status == W.SUCCESS else definition.on_failure)
    if not hook:
        return None
    last = TaskRun.objects.filter(workflow_id=workflow_id).aggregate(last=Max("node"))["last"]
    if definition.calling == DIRECTOR:
        payload = Workflow.objects.filter(pk=workflow_id).values_list("payload", flat=True)[0]
        args = [None] if status == W.SUCCESS else []
        kwargs = {**hook.kwargs, "workflow_id": str(workflow_id), "payload": payload}
    else:
        args = [str(workflow_id), _argument(workflow_id, status, result)]
        kwargs = dict(hook.kwargs)
    return TaskRun.objects.create(
        workflow_id=workflow_id,
        node=last + 1,
        task=hook.task,
        args=[*args, *hook.args],
        kwargs=kwargs,
        options={k: v for k, v in hook.options.items() if k in ("queue", "priority")},
        is_hook=True,
        status=T.QUEUED,
        queued_at=timezone.now(),
        claim=uuid.uuid4(),
    )


def _argument(workflow_id: Any, status: str, result: Any) -> Any:
    """The run's result for on_success; the first failed task for on_failure."""
    if status == W.SUCCESS:
        return result
    failed = (
        TaskRun.objects.filter(workflow_id=workflow_id, status=T.FAILURE, is_hook=False)
        .order_by("finished_at")
        .first()
    )
    return failed and {
        "task_run": str(failed.pk),
        "task": failed.task,
        "exception_type": failed.exception_type,
        "exception_message": failed.exception_message,
    }
