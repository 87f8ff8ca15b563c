"""Celery tasks of the app itself."""

from celery import shared_task

from . import engine
from .conf import get_setting


@shared_task(name="django_workflows.reap", ignore_result=True)
def reap() -> list[str]:
    """Fail task runs whose worker is gone or that ran too long (run it from beat)."""
    return engine.reap(grace=get_setting("REAPER_GRACE"), timeout=get_setting("TASK_TIMEOUT"))
