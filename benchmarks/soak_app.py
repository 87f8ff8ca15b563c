"""The soak's tasks, its hooked workflow, and what it records (benchmarks/soak.py).

Imported by the soak's workers (``CELERY_IMPORTS``) and by the soak itself.
Executions and publishes are appended to files in ``DW_SOAK_DIR``, not to a
database or Redis: the soak restarts both, and a record must survive that
(and must not make a task fail when the database is down).
"""

import json
import os
import random
import time
from pathlib import Path
from typing import Any

from celery import group, shared_task
from celery.signals import before_task_publish

from django_workflows import workflow
from django_workflows.headers import ATTEMPT_HEADER, RUN_HEADER

DIR = Path(os.environ.get("DW_SOAK_DIR", "."))
EXECUTIONS = DIR / "executions.log"
PUBLISHES = DIR / "publishes.log"


def append(path: Path, record: list) -> None:
    """One line per record; O_APPEND keeps lines from concurrent processes whole."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


def executed(task: Any) -> None:
    """Record one execution of a task body, then dawdle a little so kills land mid-task."""
    append(EXECUTIONS, [task.request.id, task.request.retries or 0, os.getpid()])
    time.sleep(random.uniform(0, 0.05))


@before_task_publish.connect(dispatch_uid="soak.publish", weak=False)
def publishing(sender: Any = None, headers: dict | None = None, **kwargs: Any) -> None:
    """Every message of a workflow task that any process publishes, with its attempt."""
    headers = headers or {}
    if RUN_HEADER in headers:
        append(
            PUBLISHES,
            [headers.get("id"), headers.get(ATTEMPT_HEADER), headers.get("retries") or 0],
        )


@shared_task(bind=True, name="soak.add")
def add(self, x: int, y: int) -> int:
    executed(self)
    return x + y


@shared_task(bind=True, name="soak.tsum")
def tsum(self, numbers: list) -> int:
    executed(self)
    return sum(numbers)


@shared_task(bind=True, name="soak.collect")
def collect(self, *args: Any) -> list:
    executed(self)
    return list(args)


@shared_task(bind=True, name="soak.slow")
def slow(self, value: int, seconds: float = 0.5) -> int:
    """Long enough that a kill often finds it running."""
    executed(self)
    time.sleep(seconds)
    return value


@shared_task(bind=True, name="soak.retry", max_retries=10)
def retry(self, value: int, times: int = 2) -> int:
    """Retries ``times`` times (self.retry), then returns ``value``."""
    executed(self)
    if self.request.retries < times:
        raise self.retry(exc=ConnectionError(f"try {self.request.retries}"), countdown=0.05)
    return value


@shared_task(bind=True, name="soak.hook")
def hook(self, workflow_id: str, result: Any, tag: str) -> list:
    executed(self)
    return [tag, result]


@workflow("soak.hooked", on_success=hook.s("done"))
def hooked(payload: dict) -> Any:
    """A chain with a retrying step into a chord, with an on_success hook:
    ``3 * (n + 1) + 3``."""
    n = payload["n"]
    return add.s(n, 1) | retry.s() | group(add.s(i) for i in range(3)) | tsum.s()
