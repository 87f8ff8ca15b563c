"""Small helpers shared by the test modules."""

import time

from django_workflows.models import TaskRun, Workflow


def until(predicate, timeout=30.0, what="condition"):
    """Wait on state, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"Timed out waiting for {what}")


def node(wf: Workflow, index: int) -> TaskRun:
    return wf.task_runs.get(node=index)


def worker_idle(app) -> bool:
    """No task is running, reserved or scheduled on any worker."""
    inspect = app.control.inspect(timeout=1.0)
    active, reserved, scheduled = inspect.active(), inspect.reserved(), inspect.scheduled()
    return all(replies and not any(replies.values()) for replies in (active, reserved, scheduled))
