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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from celery import current_app
from django.db import transaction

_local = threading.local()


def enabled() -> bool:
    """Whether Celery runs tasks inline (``task_always_eager``).

    Never while the engine reports a task a worker received from the
    broker (:func:`reporting`): what it sends goes to the broker too. That
    answer saves the lookup, which misses in each of Celery's maps (Django's
    settings among them) before it reaches the default: about 70 µs of CPU
    a send in a worker, where the code path is cold.
    """
    if getattr(_local, "from_broker", False):
        return False
    return bool(current_app.conf.task_always_eager)


@contextmanager
def reporting(request: Any) -> Iterator[None]:
    """The engine reports the task of ``request`` (Celery's task context)
    within the block: if a worker received it rather than ran it inline,
    what the report sends is sent to the broker, whatever the worker's
    ``task_always_eager`` says (natively, such a worker would run a chain's
    next task inline; either way it runs once, with the same input)."""
    saved = getattr(_local, "from_broker", False)
    _local.from_broker = not request.is_eager
    try:
        yield
    finally:
        _local.from_broker = saved


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
