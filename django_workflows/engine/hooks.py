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


def create(
    workflow_id: Any, name: str, status: str, result: Any, hooks: dict | None
) -> TaskRun | None:
    """Save the hook of run ``workflow_id`` (of definition ``name``) for its
    ending ``status``, queued. Returns None when there is no hook for that outcome.

    ``hooks`` are those the run stored at launch; a run launched before runs
    stored them (None) takes its definition's from this process's registry.
    """
    if hooks is None:
        definition = registry.find(name)
        hooks = definition.hooks() if definition else {}
    hook = hooks.get("on_success" if status == W.SUCCESS else "on_failure")
    if not hook:
        return None
    hook_kwargs = hook.get("kwargs") or {}
    last = TaskRun.objects.filter(workflow_id=workflow_id).aggregate(last=Max("node"))["last"]
    if hooks.get("calling") == DIRECTOR:
        args = [None] if status == W.SUCCESS else []
        payload = Workflow.objects.filter(pk=workflow_id).values_list("payload", flat=True)[0]
        kwargs = {**hook_kwargs, "workflow_id": str(workflow_id), "payload": payload}
    else:
        args = [str(workflow_id), _argument(workflow_id, status, result)]
        kwargs = dict(hook_kwargs)
    options = hook.get("options") or {}
    return TaskRun.objects.create(
        workflow_id=workflow_id,
        node=last + 1,
        task=hook["task"],
        args=[*args, *(hook.get("args") or [])],
        kwargs=kwargs,
        options={k: v for k, v in options.items() if k in ("queue", "priority")},
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
