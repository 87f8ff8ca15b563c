"""Whole-workflow schedules on django-celery-beat.

Beat fires ``django_workflows.launch_workflow(name=..., payload=...)`` like
any periodic task; :func:`fire` applies the schedule's overlap policy and
records every fire, so a schedule whose workflow or payload went bad fails
visibly instead of doing nothing.
"""

import json
import logging
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django_celery_beat.models import PeriodicTask

from .engine import launch
from .exceptions import WorkflowError
from .models import OverlapPolicy, ScheduleFire, Workflow, WorkflowSchedule
from .models import WorkflowStatus as W

logger = logging.getLogger(__name__)

LAUNCH_TASK = "django_workflows.launch_workflow"


def fire(name: str, payload: Any = None, periodic_task_name: str | None = None) -> str | None:
    """Launch workflow ``name`` for a beat fire; return the run's id, or None if skipped."""
    schedule = (
        WorkflowSchedule.objects.filter(periodic_task__name=periodic_task_name).first()
        if periodic_task_name
        else None
    )
    record = {"schedule": schedule, "periodic_task_name": periodic_task_name or ""}
    try:
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


def _cancel_quietly(run: Workflow) -> None:
    try:
        run.cancel()
    except WorkflowError:
        pass  # it finished meanwhile


def task_kwargs(definition: str, payload: Any) -> str:
    """The PeriodicTask kwargs (JSON text) that make beat launch ``definition``."""
    return json.dumps({"name": definition, "payload": payload})


@receiver(post_delete, sender=WorkflowSchedule, dispatch_uid="django_workflows.schedule_deleted")
def _delete_periodic_task(sender: Any, instance: WorkflowSchedule, **kwargs: Any) -> None:
    """A workflow schedule and its beat entry go together (beat sees the change)."""
    PeriodicTask.objects.filter(pk=instance.periodic_task_id).delete()
    from django_celery_beat.models import PeriodicTasks

    PeriodicTasks.update_changed()
