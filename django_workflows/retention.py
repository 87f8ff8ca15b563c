"""Deleting finished runs, never one that is alive: ``manage.py workflows prune``
and the retention pass.

A run listed as finished may be resumed before it is deleted. Django deletes a run's
task runs and then the run by primary key, so the status is checked where the rows
are deleted: in one transaction the runs still finished are locked, then deleted. A
resume (which moves the run's row first) waits for that transaction and then finds
nothing to resume; a run it resumed first is no longer finished and is kept.

celery-director's ``retention: {offset: N}`` keeps the newest N runs of a workflow
(``DJANGO_WORKFLOWS["RETENTION"]`` for those that say nothing, as director's
``DEFAULT_RETENTION_OFFSET``). Unlike director, a run that has not finished is never
deleted. Run the pass from beat with the task ``django_workflows.retention``
(director runs its cleanup daily at midnight), or call :func:`apply_retention`.
"""

from collections.abc import Collection
from typing import Any

from django.db import transaction
from django.db.models import Subquery

from .conf import get_setting
from .definitions import Registry, registry
from .models import FINISHED_WORKFLOW, Workflow


def delete_finished(ids: Collection[Any]) -> int:
    """Delete those of the runs ``ids`` finished at the moment of the delete; how many."""
    with transaction.atomic():
        # PostgreSQL locks the rows; SQLite's (IMMEDIATE) transaction holds the write lock.
        finished = Workflow.objects.filter(pk__in=ids, status__in=FINISHED_WORKFLOW)
        locked = list(finished.select_for_update().values_list("pk", flat=True))
        if locked:
            Workflow.objects.filter(pk__in=locked, status__in=FINISHED_WORKFLOW).delete()
    return len(locked)


def retentions(into: Registry | None = None) -> dict[str, int]:
    """How many newest runs each registered workflow keeps; those that keep all are left out."""
    default = get_setting("RETENTION")
    kept = {}
    for definition in registry if into is None else into:
        offset = default if definition.retention is None else definition.retention
        if offset is not None and offset >= 0:
            kept[definition.name] = offset
    return kept


def apply_retention(batch_size: int = 500) -> dict[str, int]:
    """Delete finished runs beyond each workflow's retention; return how many, by name.

    The newest N runs of a workflow are kept whatever their status; of the
    older ones, those finished at the moment of the delete are deleted with
    their task runs, ``batch_size`` runs per transaction.
    """
    deleted = {}
    for name, offset in retentions().items():
        newest = Workflow.objects.filter(name=name).order_by("-created", "-pk").values("pk")
        doomed = Workflow.objects.filter(name=name, status__in=FINISHED_WORKFLOW).exclude(
            pk__in=Subquery(newest[:offset])
        )
        count = 0
        while ids := list(doomed.values_list("pk", flat=True)[:batch_size]):
            count += delete_finished(ids)
        if count:
            deleted[name] = count
    return deleted
