"""``periodic:`` made into django-celery-beat schedules, kept in step with the files."""

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, router, transaction

from .loading import load_errors, loaded_workflows
from .specs import SCHEDULE_SUFFIX, Periodic, YamlWorkflow

logger = logging.getLogger(__name__)


def schedule_name(workflow: str) -> str:
    """Beat's name of the schedule made from a YAML workflow's ``periodic:``."""
    return f"{workflow}{SCHEDULE_SUFFIX}"


@dataclass
class SyncResult:
    """What :func:`sync_schedules` did, schedule name by schedule name."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: Why removed schedules were left alone (files with errors), if they were.
    kept_because: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.disabled)


def sync_schedules(workflows: Iterable[YamlWorkflow] | None = None) -> SyncResult:
    """Make beat's schedules match the ``periodic:`` of the YAML workflows.

    Each workflow with ``periodic:`` gets a ``PeriodicTask`` named
    ``"<name> (YAML)"`` (task ``django_workflows.launch_workflow``) and its
    ``WorkflowSchedule``; YAML-made schedules whose workflow lost ``periodic:``
    are disabled, not deleted, so their runs and fires stay linked. The files
    are the source of truth: an edit made in the admin is put back. Running
    it again changes nothing. Default: the loaded workflows; while a
    configured file has errors, nothing is disabled (its workflows are not
    loaded, yet they may still be periodic).
    """
    from django_celery_beat.models import PeriodicTask, PeriodicTasks

    from ..schedules import LAUNCH_TASK, save_schedule

    result = SyncResult()
    if workflows is None:
        workflows = loaded_workflows()
        broken = sorted({e.file for e in load_errors() if not e.is_warning})
        if broken:
            result.kept_because = (
                f"{', '.join(broken)} could not be loaded: no schedule is disabled until "
                "it is fixed (see manage.py check)."
            )
    wanted: set[str] = set()
    with transaction.atomic(using=router.db_for_write(PeriodicTask)):
        for workflow in workflows:
            if workflow.periodic is None:
                continue
            name = schedule_name(workflow.name)
            wanted.add(name)
            periodic = workflow.periodic
            task = PeriodicTask.objects.filter(name=name).first()
            _schedule, changed = save_schedule(
                name,
                workflow.name,
                periodic.payload,
                _beat_schedule(periodic),
                overlap=periodic.overlap,
                periodic_task=task,
                enabled=True,
                one_off=False,
                description=f"From {workflow.file}: edit the file, then run "
                "manage.py workflows sync-schedules (migrate does it too).",
            )
            if task is None:
                result.created.append(name)
            else:
                (result.updated if changed else result.unchanged).append(name)
        if not result.kept_because:
            stale = PeriodicTask.objects.filter(
                name__endswith=SCHEDULE_SUFFIX, task=LAUNCH_TASK, enabled=True
            ).exclude(name__in=wanted)
            for task in stale:
                task.enabled = False
                task.save()
                result.disabled.append(task.name)
        if result.changed:
            PeriodicTasks.update_changed()  # beat re-reads its schedule
    return result


def _beat_schedule(periodic: Periodic) -> Any:
    """The IntervalSchedule or CrontabSchedule row for ``periodic`` (reused if it exists)."""
    from django_celery_beat.models import IntervalSchedule, crontab_schedule_celery_timezone

    from ..schedules import beat_schedule

    if periodic.crontab is not None:
        minute, hour, day_of_month, month_of_year, day_of_week = periodic.crontab
        return beat_schedule(
            "crontab",
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
            timezone=periodic.timezone or crontab_schedule_celery_timezone(),
        )
    seconds = periodic.interval
    assert seconds is not None
    if float(seconds).is_integer():
        return beat_schedule("interval", every=int(seconds), period=IntervalSchedule.SECONDS)
    return beat_schedule(
        "interval", every=round(seconds * 1_000_000), period=IntervalSchedule.MICROSECONDS
    )


def sync_after_migrate(sender: Any, using: str = "default", **kwargs: Any) -> None:
    """``post_migrate``: bring the YAML schedules up to date on every ``migrate``.

    Errors are logged, never raised: a deploy's ``migrate`` must not fail
    because, say, beat's tables are on another database.
    """
    from django_celery_beat.models import PeriodicTask

    if using != router.db_for_write(PeriodicTask):
        return
    try:
        result = sync_schedules()
    except DatabaseError:
        logger.warning("Could not sync the YAML workflow schedules", exc_info=True)
        return
    stdout = kwargs.get("stdout")
    if result.changed and stdout is not None and kwargs.get("verbosity", 1) >= 1:
        stdout.write(
            f"YAML workflow schedules: {len(result.created)} created, "
            f"{len(result.updated)} updated, {len(result.disabled)} disabled.\n"
        )
