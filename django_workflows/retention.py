"""Deleting finished runs (``manage.py workflows prune``), never one that is alive.

A run listed as finished may be resumed before it is deleted. Django deletes a run's
task runs and then the run by primary key, so the status is checked where the rows
are deleted: in one transaction the runs still finished are locked, then deleted. A
resume (which moves the run's row first) waits for that transaction and then finds
nothing to resume; a run it resumed first is no longer finished and is kept.
"""

from collections.abc import Collection
from typing import Any

from django.db import transaction

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
