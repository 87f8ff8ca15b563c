"""The retention pass: delete the finished runs each workflow no longer keeps.

celery-director's ``retention: {offset: N}`` keeps the newest N runs of a
workflow (``DJANGO_WORKFLOWS["RETENTION"]`` for those that say nothing, as
director's ``DEFAULT_RETENTION_OFFSET``). Unlike director, a run that has not
finished is never deleted: only runs finished when the delete runs go.
Run it from beat with the task ``django_workflows.retention`` (director runs
its cleanup daily at midnight), or call :func:`apply_retention`.
"""

from django.db import router, transaction
from django.db.models import Subquery

from .conf import get_setting
from .definitions import Registry, registry
from .models import FINISHED_WORKFLOW, Workflow


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
        while True:
            with transaction.atomic(using=router.db_for_write(Workflow)):
                # Locked, then deleted only if still finished: a run resumed
                # meanwhile is no longer in the set.
                ids = list(doomed.select_for_update().values_list("pk", flat=True)[:batch_size])
                if ids:
                    _, by_model = Workflow.objects.filter(
                        pk__in=ids, status__in=FINISHED_WORKFLOW
                    ).delete()
                    count += by_model.get(Workflow._meta.label, 0)
            if not ids:
                break
        if count:
            deleted[name] = count
    return deleted
