"""Whole-workflow schedules on django-celery-beat.

Beat fires ``django_workflows.launch_workflow(name=..., payload=...)`` like
any periodic task; :func:`fire` applies the schedule's overlap policy and
records every fire, so a schedule whose workflow or payload went bad, or whose
owner lost the right to launch it, fails visibly instead of doing nothing.
"""

import json
import logging
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from .engine import launch
from .exceptions import LaunchRefused, WorkflowError
from .models import OverlapPolicy, ScheduleFire, Workflow, WorkflowSchedule
from .models import WorkflowStatus as W
from .policy import may_launch

logger = logging.getLogger(__name__)

LAUNCH_TASK = "django_workflows.launch_workflow"

BeatSchedule = IntervalSchedule | CrontabSchedule | SolarSchedule | ClockedSchedule

#: beat's schedule models, by the name of the PeriodicTask field that holds them
BEAT_SCHEDULES: dict[str, type[BeatSchedule]] = {
    "interval": IntervalSchedule,
    "crontab": CrontabSchedule,
    "solar": SolarSchedule,
    "clocked": ClockedSchedule,
}


def fire(name: str, payload: Any = None, periodic_task_name: str | None = None) -> str | None:
    """Launch workflow ``name`` for a beat fire; return the run's id, or None if skipped."""
    schedule = (
        WorkflowSchedule.objects.filter(periodic_task__name=periodic_task_name)
        .select_related("owner")
        .first()
        if periodic_task_name
        else None
    )
    record = {"schedule": schedule, "periodic_task_name": periodic_task_name or ""}
    try:
        if schedule is not None and schedule.owner is not None:
            _check_owner(schedule, name)
        with transaction.atomic():
            message = ""
            if schedule is not None:
                # One fire of a schedule at a time decides about overlap.
                WorkflowSchedule.objects.select_for_update().filter(pk=schedule.pk).first()
                live = list(schedule.runs.filter(status__in=(W.PENDING, W.RUNNING)))
                if live and schedule.overlap == OverlapPolicy.SKIP:
                    text = f"Skipped: run {live[0].pk} of this schedule is still {live[0].status}."
                    ScheduleFire.objects.create(
                        outcome=ScheduleFire.Outcome.SKIPPED, message=text, **record
                    )
                    logger.info("Schedule %s: %s", periodic_task_name, text)
                    return None
                if live and schedule.overlap == OverlapPolicy.CANCEL_PREVIOUS:
                    for run in live:
                        _cancel_quietly(run)
                    message = f"Canceled the previous run(s): {', '.join(str(r.pk) for r in live)}."
            workflow = launch(name, payload, schedule=schedule)
            ScheduleFire.objects.create(
                outcome=ScheduleFire.Outcome.LAUNCHED, workflow=workflow, message=message, **record
            )
            return str(workflow.pk)
    except WorkflowError as exc:
        ScheduleFire.objects.create(outcome=ScheduleFire.Outcome.FAILED, message=str(exc), **record)
        logger.error("Schedule %s could not launch %r: %s", periodic_task_name, name, exc)
        raise


def _check_owner(schedule: WorkflowSchedule, name: str) -> None:
    """A schedule launches as its owner, who must still be allowed to (``policy``)."""
    if not may_launch(schedule.owner, name):
        raise LaunchRefused(
            f"This schedule's owner is not allowed to launch workflow {name!r} "
            f"({schedule.owner}): someone who is must save the schedule again."
        )


def _cancel_quietly(run: Workflow) -> None:
    try:
        run.cancel()
    except WorkflowError:
        pass  # it finished meanwhile


def task_kwargs(definition: str, payload: Any) -> str:
    """The PeriodicTask kwargs (JSON text) that make beat launch ``definition``."""
    return json.dumps({"name": definition, "payload": payload})


def beat_schedule(kind: str, **fields: Any) -> BeatSchedule:
    """Beat's schedule row of ``kind`` ("interval", "crontab"...) with these fields.

    An equal row is shared (the oldest, if beat's admin made twins), so saving a
    schedule again adds no row; a clocked one is always new, as beat's admin makes it.
    """
    model = BEAT_SCHEDULES[kind]
    if kind != "clocked":
        row = model.objects.filter(**fields).order_by("pk").first()
        if row is not None:
            return row
    return model.objects.create(**fields)


def save_schedule(
    name: str,
    definition: str,
    payload: Any,
    when: BeatSchedule,
    *,
    overlap: str = OverlapPolicy.ALLOW,
    periodic_task: PeriodicTask | None = None,
    owner: Any = None,
    **task_fields: Any,
) -> tuple[WorkflowSchedule, bool]:
    """Write beat's ``PeriodicTask`` that launches ``definition``, and its ``WorkflowSchedule``.

    The one writer of the pair, for the admin's form and the YAML sync alike.
    ``periodic_task`` is the entry to update (None: a new one, named ``name``);
    ``owner`` the person each fire launches as (None: the project's own, e.g. YAML);
    ``when`` its schedule row (see :func:`beat_schedule`); ``task_fields`` more
    PeriodicTask fields (``enabled``, ``one_off``, ``description``, ``start_time``...),
    those not given are left as they are. Only what differs is saved, so writing a
    schedule again saves nothing and beat is not told. Returns the schedule and
    whether anything was written. Call it in a transaction: it writes two rows.
    """
    task = periodic_task if periodic_task is not None else PeriodicTask()
    created = task.pk is None
    desired = {
        "name": name,
        "task": LAUNCH_TASK,
        **{k: when if isinstance(when, m) else None for k, m in BEAT_SCHEDULES.items()},
        **task_fields,
    }
    changed = created
    for attr, value in desired.items():
        if getattr(task, attr) != value:
            setattr(task, attr, value)
            changed = True
    kwargs = task_kwargs(definition, payload)
    if created or _json_or_none(task.kwargs) != json.loads(kwargs):
        task.kwargs = kwargs  # the same JSON written otherwise is left as it is
        changed = True
    if changed:
        task.save()  # beat's DatabaseScheduler notices through PeriodicTasks.changed()
    schedule = None if created else WorkflowSchedule.objects.filter(periodic_task=task).first()
    owner_id = getattr(owner, "pk", None)
    if schedule is None:
        schedule = WorkflowSchedule.objects.create(
            periodic_task=task, definition=definition, overlap=overlap, owner_id=owner_id
        )
        changed = True
    elif (schedule.definition, schedule.overlap, schedule.owner_id) != (
        definition,
        overlap,
        owner_id,
    ):
        schedule.definition, schedule.overlap, schedule.owner_id = definition, overlap, owner_id
        schedule.save(update_fields=["definition", "overlap", "owner"])
        changed = True
    return schedule, changed


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text or "null")
    except ValueError:
        return None


@receiver(post_delete, sender=WorkflowSchedule, dispatch_uid="django_workflows.schedule_deleted")
def _delete_periodic_task(sender: Any, instance: WorkflowSchedule, **kwargs: Any) -> None:
    """A workflow schedule and its beat entry go together (beat sees the change)."""
    PeriodicTask.objects.filter(pk=instance.periodic_task_id).delete()
    from django_celery_beat.models import PeriodicTasks

    PeriodicTasks.update_changed()
