"""Deleting finished runs, never one that is alive: ``manage.py workflows prune`` and
the retention pass.

A run listed as finished may be resumed before it is deleted. So each batch locks the
runs still finished (``SELECT ... FOR UPDATE``: PostgreSQL re-checks the status of a
row it had to wait for; SQLite's IMMEDIATE transaction holds the write lock) and
deletes them in the same transaction. A resume (which moves the run's row first) waits
for that transaction and then finds nothing to resume; a run it resumed first is no
longer finished and is kept.

The delete is set-based: one statement per table for the whole batch (attempts, edges,
task runs, the runs), where Django's ``delete()`` would load every task run to look for
what hangs on it: about ten times faster. When a project hangs its own rows on runs or
task runs, or listens to their delete signals, Django's ``delete()`` does it instead.

Retention (``DJANGO_WORKFLOWS["RETENTION"]``, see :func:`rules`): runs older than
``days``, or beyond the newest ``runs`` of their workflow, are deleted once finished;
celery-director's ``retention: {offset: N}`` keeps the newest N runs of a workflow.
Unlike director, a run that has not finished is never deleted. Beat runs the pass with
the task ``django_workflows.retention`` (director runs its cleanup daily at midnight);
each pass logs what it deleted and how fast.
"""

import logging
import time
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.signals import post_delete, pre_delete
from django.utils import timezone

from .conf import get_setting
from .definitions import Registry, registry
from .lists import distinct_values
from .models import FINISHED_WORKFLOW, Edge, ScheduleFire, TaskAttempt, TaskRun, Workflow

logger = logging.getLogger(__name__)

#: Runs per transaction. Small enough that PostgreSQL finds a batch's edges through
#: their index (at 5,000 runs it read the whole edge table once per batch: 0.3 to 0.8 s
#: at 4,000,000 edges, more as the history grows) and that each transaction holds its
#: locks briefly; large enough that each statement's own cost is spread thin.
BATCH_SIZE = 1000


#: What hangs on a run or a task run, as the set-based delete handles it.
KNOWN_RELATIONS = {
    (TaskRun, "workflow"),
    (Workflow, "relaunched_from"),
    (ScheduleFire, "workflow"),
    (TaskAttempt, "task_run"),
    (TaskRun, "mapped_from"),
    (TaskRun, "parents"),
    (Edge, "from_taskrun"),
    (Edge, "to_taskrun"),
}


@dataclass
class Deleted:
    """What a delete removed: runs by workflow name, and their task runs."""

    runs: Counter = field(default_factory=Counter)
    task_runs: int = 0

    def add(self, other: "Deleted") -> None:
        self.runs.update(other.runs)
        self.task_runs += other.task_runs


def _set_based() -> bool:
    """Whether the statements below delete all that Django's collector would."""
    related = {
        (f.related_model, f.field.name)
        for model in (Workflow, TaskRun)
        for f in model._meta.get_fields(include_hidden=True)
        if f.auto_created and not f.concrete
    }
    listened = any(
        signal.has_listeners(model)
        for signal in (pre_delete, post_delete)
        for model in (Workflow, TaskRun, TaskAttempt, Edge)
    )
    return related <= KNOWN_RELATIONS and not listened


def _id_list(ids: list[Any]) -> Any:
    """``ids`` for an ``__in`` lookup. On PostgreSQL, one array parameter
    (``unnest``) rather than one parameter per id: a batch's statements each name
    its 1,000 ids, and building and sending 1,000 parameters cost more than the
    statements themselves."""
    if connection.vendor != "postgresql" or not ids:
        return ids
    return RawSQL("SELECT unnest(%s::uuid[])", ([str(pk) for pk in ids],))


def _delete_batch(ids: list[Any]) -> int:
    """Delete the runs ``ids`` and all that hangs on them; how many task runs went."""
    if not _set_based():
        _, by_model = Workflow.objects.filter(pk__in=ids).delete()
        return by_model.get(TaskRun._meta.label, 0)
    ids = _id_list(ids)
    tasks = TaskRun.objects.filter(workflow_id__in=ids)
    # Fast deletes (one DELETE ... WHERE ... IN (subquery) each): nothing hangs on these.
    TaskAttempt.objects.filter(task_run__in=tasks.values("pk")).delete()
    # An edge joins two task runs of one run (the engine draws none across runs):
    # deleting by the child deletes them all.
    Edge.objects.filter(from_taskrun__in=tasks.values("pk")).delete()
    ScheduleFire.objects.filter(workflow_id__in=ids).update(workflow=None)
    Workflow.objects.filter(relaunched_from__in=ids).update(relaunched_from=None)
    # What hangs on them is gone: Django's collector would only look again, row by row.
    count = tasks._raw_delete(tasks.db)
    Workflow.objects.filter(pk__in=ids)._raw_delete(Workflow.objects.db)
    return count


def delete_finished_matching(queryset: QuerySet, batch_size: int = BATCH_SIZE) -> Deleted:
    """Delete the runs of ``queryset`` finished at the moment of the delete, with their
    task runs, ``batch_size`` runs per transaction, oldest first."""
    deleted = Deleted()
    finished = queryset.filter(status__in=FINISHED_WORKFLOW).order_by("created", "pk")
    after = finished
    while rows := list(after.values_list("pk", "created")[:batch_size]):
        ids = [pk for pk, _ in rows]
        with transaction.atomic():
            still = Workflow.objects.filter(pk__in=_id_list(ids), status__in=FINISHED_WORKFLOW)
            batch = list(still.select_for_update().values_list("pk", "name"))
            task_runs = _delete_batch([pk for pk, _ in batch]) if batch else 0
        deleted.add(Deleted(Counter(name for _, name in batch), task_runs))
        # The next batch starts after this one (keyset), not at the oldest again:
        # the index entries of the rows just deleted stay until vacuumed, and each
        # batch would walk all of them.
        last_pk, last_created = rows[-1]
        after = finished.filter(created__gte=last_created).exclude(
            created=last_created, pk__lte=last_pk
        )
    return deleted


def delete_finished(ids: Collection[Any]) -> int:
    """Delete those of the runs ``ids`` finished at the moment of the delete; how many."""
    return sum(delete_finished_matching(Workflow.objects.filter(pk__in=ids)).runs.values())


# -- retention ------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """What a workflow keeps: runs of the last ``days`` days and its newest ``runs``
    runs (None: no limit of that kind). A run beyond either is deleted once finished."""

    days: float | None = None
    runs: int | None = None


def _rule(value: Any, where: str) -> Rule | None:
    """A rule from the setting: an int (newest runs; negative: all), a dict or None."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return Rule(runs=value) if value >= 0 else None
    if isinstance(value, Mapping) and set(value) <= {"days", "runs"}:
        days, runs = value.get("days"), value.get("runs")
        if (days is None or (isinstance(days, int | float) and days >= 0)) and (
            runs is None or (isinstance(runs, int) and runs >= 0)
        ):
            return Rule(days=days, runs=runs) if (days, runs) != (None, None) else None
    raise ImproperlyConfigured(
        f'DJANGO_WORKFLOWS["RETENTION"]{where}: expected a number of runs or '
        f'{{"days": D, "runs": N}} (non-negative), got {value!r}.'
    )


def rules(into: Registry | None = None) -> tuple[Rule | None, dict[str, Rule | None]]:
    """The rule for workflows without their own, and each workflow's own.

    ``RETENTION`` as an int is director's default offset: it applies to registered
    workflows only. As a dict, its ``days`` and ``runs`` apply to the runs of every
    workflow name, registered or not (ad-hoc canvases too), except those with their
    own rule: an entry of its ``workflows``, else the definition's ``retention:``.
    """
    setting = get_setting("RETENTION")
    definitions = list(registry if into is None else into)
    own: dict[str, Rule | None] = {
        d.name: _rule(d.retention, f" ({d.name}'s retention:)")
        for d in definitions
        if d.retention is not None
    }
    if setting is None or not isinstance(setting, Mapping):
        default = _rule(setting, "")
        own = {d.name: own[d.name] if d.name in own else default for d in definitions}
        return None, own
    extra = set(setting) - {"days", "runs", "workflows"}
    if extra:
        raise ImproperlyConfigured(f'DJANGO_WORKFLOWS["RETENTION"]: unknown keys {sorted(extra)}.')
    for name, value in (setting.get("workflows") or {}).items():
        own[name] = _rule(value, f'["workflows"][{name!r}]')
    return _rule({k: setting.get(k) for k in ("days", "runs")}, ""), own


def retentions(into: Registry | None = None) -> dict[str, int]:
    """How many newest runs each registered workflow keeps; those that keep all are left out."""
    _, own = rules(into)
    return {name: rule.runs for name, rule in own.items() if rule and rule.runs is not None}


def beyond_newest(name: str, keep: int, finished_only: bool = False) -> Q | None:
    """The runs of ``name`` older than its newest ``keep`` (finished ones, if so asked):
    older than the ``keep``-th newest, read once through the (name, created) index."""
    if keep == 0:
        return Q(name=name)
    runs = Workflow.objects.filter(name=name)
    if finished_only:
        runs = runs.filter(status__in=FINISHED_WORKFLOW)
    cutoff = runs.order_by("-created").values_list("created", flat=True)[keep - 1 : keep].first()
    return None if cutoff is None else Q(name=name, created__lt=cutoff)


def doomed(name: str, rule: Rule, now: Any = None) -> Q | None:
    """The runs of ``name`` that ``rule`` does not keep (None: none)."""
    beyond = []
    if rule.days is not None:
        since = (now or timezone.now()) - timedelta(days=rule.days)
        beyond.append(Q(name=name, created__lt=since))
    if rule.runs is not None and (q := beyond_newest(name, rule.runs)) is not None:
        beyond.append(q)
    if not beyond:
        return None
    return beyond[0] if len(beyond) == 1 else beyond[0] | beyond[1]


def _names(default: Rule | None, own: Iterable[str]) -> list[str]:
    names = set(own)
    if default is not None:
        names.update(distinct_values(Workflow, "name", limit=None))
    return sorted(names)


def apply_retention(batch_size: int = BATCH_SIZE) -> dict[str, int]:
    """Delete the finished runs each workflow's rule does not keep; how many, by name."""
    start = time.perf_counter()
    default, own = rules()
    now = timezone.now()
    deleted = Deleted()
    for name in _names(default, own):
        rule = own[name] if name in own else default
        if rule is not None and (q := doomed(name, rule, now)) is not None:
            deleted.add(delete_finished_matching(Workflow.objects.filter(q), batch_size))
    seconds = time.perf_counter() - start
    total = sum(deleted.runs.values())
    logger.info(
        "Retention: %d finished run(s) and %d task run(s) deleted in %.1f s (%.0f runs/s)%s",
        total,
        deleted.task_runs,
        seconds,
        total / seconds if seconds else 0,
        "".join(f"; {name}: {n}" for name, n in sorted(deleted.runs.items())),
    )
    return dict(deleted.runs)
