"""A run's counters: every change to them goes through here.

``tasks_total``, ``tasks_finished``, ``tasks_succeeded`` and ``tasks_failed``
live on the Workflow row so that "is the run done?" and the progress bars
read one row, never a scan of its task runs. Each change is a relative
UPDATE (``F() + n``), so concurrent workers never lose a count. The one
exception is PostgreSQL's success statement (:mod:`.fastpath`), which adds
:data:`SUCCESS` inside its single round trip.
"""

from typing import Any

from django.db.models import F

from ..models import Workflow

#: What one task's success adds (also written into :mod:`.fastpath`'s SQL).
SUCCESS = {"finished": 1, "succeeded": 1}

_NAMES = ("total", "finished", "succeeded", "failed")


def deltas(**numbers: int) -> dict[str, Any]:
    """UPDATE expressions adding ``numbers`` (``total=``, ``finished=``,
    ``succeeded=``, ``failed=``; negative to take away), for a write that
    changes other fields of the run in the same statement."""
    unknown = numbers.keys() - set(_NAMES)
    if unknown:
        raise TypeError(f"No such counter: {', '.join(sorted(unknown))}")
    return {f"tasks_{name}": F(f"tasks_{name}") + n for name, n in numbers.items() if n}


def count(workflow_id: Any, **numbers: int) -> None:
    """Add ``numbers`` to the counters of run ``workflow_id`` (one UPDATE)."""
    if changes := deltas(**numbers):
        Workflow.objects.filter(pk=workflow_id).update(**changes)
