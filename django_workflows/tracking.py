"""Celery signal handlers that report each workflow task's life to the engine.

A task belongs to a workflow when its message carries the run header the
engine sets when it sends it; any other task costs nothing here but an
attribute lookup (a failure costs one indexed UPDATE that matches nothing).
"""

from typing import Any

from celery import signals

from . import engine


def _run_of(task: Any) -> tuple[str, int] | tuple[None, None]:
    request = task.request
    return getattr(request, engine.RUN_HEADER, None), getattr(request, engine.NODE_HEADER, None)


def on_prerun(sender: Any = None, task_id: str = "", task: Any = None, **kwargs: Any) -> None:
    run, _ = _run_of(task)
    if run:
        engine.task_started(task_id, task.request.hostname)


def on_success(sender: Any = None, result: Any = None, **kwargs: Any) -> None:
    run, node = _run_of(sender)
    if run:
        engine.task_succeeded(sender.request.id, run, node, result)


def on_retry(
    sender: Any = None, request: Any = None, reason: Any = None, einfo: Any = None, **kwargs: Any
) -> None:
    if getattr(request, engine.RUN_HEADER, None):
        exception = reason if isinstance(reason, BaseException) else None
        engine.task_retrying(request.id, exception, getattr(einfo, "traceback", ""))


def on_failure(
    sender: Any = None,
    task_id: str = "",
    exception: BaseException | None = None,
    einfo: Any = None,
    **kwargs: Any,
) -> None:
    # Also sent by the worker's main process (hard time limit, lost worker),
    # where the request is not at hand: the task id alone decides.
    engine.task_failed(task_id, exception, getattr(einfo, "traceback", ""))


def on_revoked(sender: Any = None, request: Any = None, **kwargs: Any) -> None:
    from celery.exceptions import TaskRevokedError

    reason = "terminated" if kwargs.get("terminated") else "revoked"
    if kwargs.get("expired"):
        reason = "expired"
    engine.task_failed(request.id, TaskRevokedError(f"The task was {reason}."))


def connect() -> None:
    """Wire the handlers to Celery's signals (called from the AppConfig)."""
    uid = "django_workflows"
    signals.task_prerun.connect(on_prerun, dispatch_uid=f"{uid}.prerun", weak=False)
    signals.task_success.connect(on_success, dispatch_uid=f"{uid}.success", weak=False)
    signals.task_retry.connect(on_retry, dispatch_uid=f"{uid}.retry", weak=False)
    signals.task_failure.connect(on_failure, dispatch_uid=f"{uid}.failure", weak=False)
    signals.task_revoked.connect(on_revoked, dispatch_uid=f"{uid}.revoked", weak=False)
