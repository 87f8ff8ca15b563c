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
