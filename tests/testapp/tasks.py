"""Small tasks for the tests. Each records its execution as a Call row."""

import time

from celery import shared_task

from .models import Call


def _record(task, args, kwargs) -> None:
    Call.objects.create(
        task=task.name.rsplit(".", 1)[-1],
        args=list(args),
        kwargs=kwargs,
        task_id=task.request.id or "",
    )


@shared_task(bind=True)
def add(self, x, y):
    _record(self, (x, y), {})
    return x + y


@shared_task(bind=True)
def mul(self, x, y):
    _record(self, (x, y), {})
    return x * y


@shared_task(bind=True)
def tsum(self, numbers):
    _record(self, (numbers,), {})
    return sum(numbers)


@shared_task(bind=True)
def collect(self, *args, **kwargs):
    """Returns what it was given: shows exactly what Celery passed."""
    _record(self, args, kwargs)
    return {"args": list(args), "kwargs": kwargs}


@shared_task(bind=True)
def const(self, value):
    _record(self, (value,), {})
    return value


@shared_task(bind=True)
def fail(self, *args, message="boom"):
    _record(self, args, {"message": message})
    raise ValueError(message)


@shared_task(bind=True)
def nap(self, seconds, value=None):
    _record(self, (seconds,), {})
    time.sleep(seconds)
    return value


@shared_task(bind=True)
def not_json(self, *args):
    _record(self, args, {})
    return object()


@shared_task(bind=True, ignore_result=True)
def noop(self, *args):
    return None


@shared_task(bind=True, ignore_result=True)
def not_json_unstored(self, *args):
    """No result backend write: only the engine notices the value is not JSON."""
    _record(self, args, {})
    return {1, 2}


@shared_task
def bench_noop(*args):
    """Does nothing, records nothing: what a hop costs is all that is left."""
    return 1
