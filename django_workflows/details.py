"""A task run as JSON: the one shape of the admin's details panel and the API's task runs.

The values are left as Python has them (datetimes, UUIDs, what Celery's JSON decoded):
the admin encodes them for people (``admin.DisplayJSONEncoder``), the API as its
schema says (``api.serializers.TaskRunSerializer``, which documents this shape).
Without Django REST framework: the admin works without the ``api`` extra.
"""

from collections.abc import Iterable, Mapping
from typing import Any

from django.apps import apps
from django.urls import NoReverseMatch, reverse

from .canvas import public_options
from .conf import get_setting
from .models import TaskRun
from .policy import sees_task_data

_TASK_RESULT_URL = "admin:django_celery_results_taskresult_change"

#: What a task was given and gave back: shown only to whom ``policy.sees_task_data``.
TASK_DATA = frozenset(
    {"args", "kwargs", "result", "exception_type", "exception_message", "traceback", "history"}
)


def task_details(
    run: TaskRun, task_results: Mapping[str, Any] | None = None, *, user: Any
) -> dict[str, Any]:
    """Every field of ``run``, its failed attempts, how long it ran, and links to other tools.

    Without the right to see task data (``policy.sees_task_data``), ``user`` gets the
    rest: the task's place in the DAG, its status and timings; ``TASK_DATA`` is left out.
    ``task_results`` (from ``task_result_ids``) saves a list one query per run; without
    it, the run's django-celery-results row is looked up.
    """
    details = _all_details(run, task_results)
    if sees_task_data(user):
        return details
    return {key: value for key, value in details.items() if key not in TASK_DATA}


def _all_details(run: TaskRun, task_results: Mapping[str, Any] | None) -> dict[str, Any]:
    if task_results is None:
        task_results = task_result_ids([run])
    duration = (
        (run.finished_at - run.started_at).total_seconds()
        if (run.finished_at and run.started_at)
        else None
    )
    return {
        "id": run.pk,
        "workflow": run.workflow_id,
        "node": run.node,
        "task": run.task,
        "status": run.status,
        "status_display": run.get_status_display(),
        "is_hook": run.is_hook,
        "is_map": run.is_map,
        "map_size": run.map_size,
        "mapped_from": run.mapped_from_id,
        "map_index": run.map_index,
        "args": run.args,
        "kwargs": run.kwargs,
        "options": public_options(run.options),  # not the engine's own notes
        "input_from": run.input,
        "result": run.result,
        "exception_type": run.exception_type,
        "exception_message": run.exception_message,
        "traceback": run.traceback,
        "attempts": run.attempts,
        "retries": run.retries,
        "marked_success": run.marked_success,
        "revoked": run.revoked,
        "worker": run.worker,
        "queued_at": run.queued_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration": duration,
        "history": [
            {
                "attempt": a.attempt,
                "item": a.item,
                "status": a.status,
                "exception_type": a.exception_type,
                "exception_message": a.exception_message,
                "traceback": a.traceback,
                "worker": a.worker,
                "started_at": a.started_at,
                "recorded_at": a.recorded_at,
            }
            for a in run.history.all()
        ],
        "links": _links(run, task_results),
    }


def task_result_ids(runs: Iterable[TaskRun]) -> dict[str, Any]:
    """The django-celery-results row of each run that has one, by task id: one query.

    Empty when that app is not installed or its admin is not mounted: nothing to link to.
    """
    ids = [str(run.pk) for run in runs]
    if not ids or not apps.is_installed("django_celery_results"):
        return {}
    try:
        reverse(_TASK_RESULT_URL, args=[0])
    except NoReverseMatch:
        return {}
    from django_celery_results.models import TaskResult

    return dict(TaskResult.objects.filter(task_id__in=ids).values_list("task_id", "pk"))


def _links(run: TaskRun, task_results: Mapping[str, Any]) -> dict[str, str]:
    links = {}
    result = task_results.get(str(run.pk))
    if result is not None:
        links["task_result"] = reverse(_TASK_RESULT_URL, args=[result])
    flower = get_setting("FLOWER_URL")
    if flower:
        links["flower"] = f"{flower.rstrip('/')}/task/{run.pk}"
    return links
