"""Settings of the app, read from ``settings.DJANGO_WORKFLOWS`` (a dict)."""

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    #: The reaper checks only tasks started at least this many seconds ago.
    "REAPER_GRACE": 30.0,
    #: The recovery pass sends task runs claimed at least this many seconds ago
    #: whose message never reached the broker (a sender died or failed).
    "RECOVERY_GRACE": 60.0,
    #: Seconds after which the recovery pass sends again, as a new attempt, a task run
    #: whose message reached the broker but never started, or whose retry never came
    #: (a message the broker lost, e.g. a Redis restart between a worker's fetch and its
    #: ack bookkeeping). A late old message is then stale and skipped. None (the
    #: default): never, so a task waiting in a long queue is never sent twice; set it
    #: above your longest queue wait and retry countdown.
    "QUEUE_TIMEOUT": None,
    #: Seconds after which a running task is failed by the reaper (None: never).
    "TASK_TIMEOUT": None,
    #: Dotted path to ``callable(user, definition) -> bool`` deciding who may start runs
    #: of a definition (launch, relaunch, a schedule's owner), on top of ``add_workflow``:
    #: asked by the API, the admin and workflow schedules alike (``policy``).
    #: None: anyone with the permission.
    "CAN_LAUNCH": None,
    #: Admin: Flower's address, to link each task run to its Flower page (None: no link).
    "FLOWER_URL": None,
    #: YAML files of workflow definitions (celery-director's workflows.yml format),
    #: loaded at startup; a malformed file is reported by ``manage.py check``.
    "DEFINITION_FILES": [],
    #: What the retention pass (task ``django_workflows.retention``, run by beat) keeps.
    #: None: everything. An int N: the newest N runs of each registered workflow whose
    #: definition sets no ``retention:`` (celery-director's DEFAULT_RETENTION_OFFSET;
    #: negative: all). A dict: ``{"days": D, "runs": N, "workflows": {name: {"days": ...,
    #: "runs": ...}}}``: runs of any workflow older than D days, or beyond its newest N,
    #: are deleted once finished; a name's own entry (or its YAML ``retention:``)
    #: replaces the defaults for it (``None``: keep all). See ``retention``.
    "RETENTION": None,
    #: Search in the admin's and the API's lists: False looks up ids exactly and names
    #: by prefix, on indexes; True also matches any part of names, errors and task
    #: names (``LIKE '%term%'``: a scan, slow on a long history).
    "FREE_TEXT_SEARCH": False,
    #: The API's lists: "page" (``?page=N``, a count estimated on PostgreSQL for long
    #: lists) or "cursor" (``?cursor=...``: next/previous links, no count at all).
    "API_PAGINATION": "page",
    #: Whether Celery also stores each workflow task's result in its result backend
    #: (``AsyncResult(task_run.id).get()``, django-celery-results' TaskResult). The
    #: task run row stores it anyway; False saves that second write, which sits on
    #: each hop's critical path (the next task is sent after it), and the result
    #: backend's space. Tasks outside workflows are not affected.
    "STORE_CELERY_RESULTS": True,
    #: Guardrails (None: no limit). A run may have at most MAX_NODES task runs,
    #: foreach items included.
    "MAX_NODES": 100_000,
    #: Bytes of a launch payload, as JSON.
    "MAX_PAYLOAD_SIZE": 1_000_000,
    #: Bytes of one task result, as JSON: a larger result fails its task.
    "MAX_RESULT_SIZE": 10_000_000,
}


def get_setting(name: str) -> Any:
    return getattr(settings, "DJANGO_WORKFLOWS", {}).get(name, DEFAULTS[name])
