"""Project receivers of the app's signals that raise while a flag file exists.

A file, not a row: the check costs no query, so query-count tests are
unchanged; the worker process sees the same file (the broker folder).
"""

import os
from pathlib import Path

from django.dispatch import receiver

from django_workflows.signals import task_run_changed, workflow_finished, workflow_started

FLAG = Path(os.environ["DW_BROKER_DIR"]) / "receivers-raise"


@receiver(task_run_changed, dispatch_uid="testapp.raising_changed")
@receiver(workflow_started, dispatch_uid="testapp.raising_started")
@receiver(workflow_finished, dispatch_uid="testapp.raising_finished")
def raise_when_flagged(sender, **kwargs):
    if FLAG.exists():
        raise RuntimeError("a project's receiver has a bug")
