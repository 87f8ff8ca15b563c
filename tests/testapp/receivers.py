"""Project receivers of the app's signals that raise while a flag file exists, and a
log of every task the worker finished (or skipped), for tests to wait on.

Files, not rows: they cost no query, so query-count tests are unchanged; the worker
process sees the same files (the broker folder).
"""

import os
from pathlib import Path

from celery.signals import task_postrun
from django.dispatch import receiver

from django_workflows.signals import task_run_changed, workflow_finished, workflow_started

FLAG = Path(os.environ["DW_BROKER_DIR"]) / "receivers-raise"
POSTRUN = Path(os.environ["DW_BROKER_DIR"]) / "postrun.log"


@receiver(task_run_changed, dispatch_uid="testapp.raising_changed")
@receiver(workflow_started, dispatch_uid="testapp.raising_started")
@receiver(workflow_finished, dispatch_uid="testapp.raising_finished")
def raise_when_flagged(sender, **kwargs):
    if FLAG.exists():
        raise RuntimeError("a project's receiver has a bug")


@task_postrun.connect(dispatch_uid="testapp.postrun_log", weak=False)
def log_postrun(sender=None, task_id=None, state=None, **kwargs):
    """One line per task message a worker is done with: its id and state (IGNORED: skipped)."""
    with POSTRUN.open("a") as log:
        log.write(f"{task_id} {state}\n")


def postrun_states(task_id) -> list[str]:
    """The states of every message of ``task_id`` a worker was done with, in order."""
    if not POSTRUN.exists():
        return []
    lines = (line.split() for line in POSTRUN.read_text().splitlines())
    return [state for done, state in lines if done == str(task_id)]
