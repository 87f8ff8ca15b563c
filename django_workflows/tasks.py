"""Celery tasks of the app itself."""

from celery import shared_task, signature

from . import engine
from .conf import get_setting


@shared_task(name="django_workflows.reap", ignore_result=True)
def reap() -> list[str]:
    """Send what was claimed and never sent, and fail task runs whose worker is
    gone or that ran too long (run it from beat, e.g. every minute)."""
    engine.recover(grace=get_setting("RECOVERY_GRACE"), queue_timeout=get_setting("QUEUE_TIMEOUT"))
    return engine.reap(grace=get_setting("REAPER_GRACE"), timeout=get_setting("TASK_TIMEOUT"))


@shared_task(name="django_workflows.retention")
def retention() -> dict[str, int]:
    """Delete the finished runs beyond each workflow's retention (YAML ``retention:``,
    else ``DJANGO_WORKFLOWS["RETENTION"]``); run it from beat, e.g. daily."""
    from .retention import apply_retention

    return apply_retention()


@shared_task(bind=True, name="django_workflows.launch_workflow")
def launch_workflow(self, name: str, payload: dict | None = None) -> str | None:
    """Launch a registered workflow: what beat runs for a workflow schedule.

    Schedule it from beat's own admin with kwargs ``{"name": ..., "payload": {...}}``,
    or from the "Workflow schedules" admin, which adds an overlap policy.
    """
    from .schedules import fire

    return fire(name, payload, periodic_task_name=getattr(self.request, "periodic_task_name", None))


@shared_task(name="django_workflows.foreach")
def foreach(items: list, task: dict) -> list:
    """``foreach(task)`` run natively by Celery (outside a workflow): ``task``
    is called for each item in turn, in this worker. In a workflow the engine
    runs one task per item instead, and this task is never sent."""
    item_task = signature(task)
    return [item_task(item) for item in items]
