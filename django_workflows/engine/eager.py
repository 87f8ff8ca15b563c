"""Celery's eager mode (``task_always_eager``): a run goes inline, tracked as on a worker.

Under eager mode the "worker" is the calling process and its database
connection. So two things change, and only these:

- What waits for a commit (a launch's first tasks, a resume's) starts at
  once: the rows are visible to this connection already, and a test's
  transaction (Django's ``TestCase``) would otherwise never commit.
- Each send is a local call, run through one queue per thread: a task's
  children are sent from inside its success handler, so calling them there
  would nest a 1,000-task chain 1,000 calls deep. The outermost send works
  the queue instead, one task at a time, in the order a single worker
  would. Task errors are recorded on the run, never raised from ``launch``.
"""

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from celery import current_app
from django.db import transaction

_local = threading.local()


def enabled() -> bool:
    """Whether Celery runs tasks inline (``task_always_eager``)."""
    return bool(current_app.conf.task_always_eager)


def after_commit(start: Callable[[], None]) -> None:
    """Call ``start`` once the current transaction commits; at once in eager mode."""
    if enabled():
        start()
    else:
        transaction.on_commit(start)


def run(calls: list[tuple[Any, str, dict]]) -> None:
    """Run ``(signature, task_id, headers)`` inline, after what is queued already."""
    queue = getattr(_local, "queue", None)
    if queue is not None:  # a task running inline sends: its caller will run it
        queue.extend(calls)
        return
    _local.queue = queue = deque(calls)
    conf = current_app.conf
    # This loop is the worker: errors end up on the run. (Celery's eager
    # retries raise Retry when task_eager_propagates is on.)
    propagates, conf.task_eager_propagates = conf.task_eager_propagates, False
    try:
        while queue:
            signature, task_id, headers = queue.popleft()
            signature.apply(task_id=task_id, headers=headers)
    finally:
        _local.queue = None
        conf.task_eager_propagates = propagates
