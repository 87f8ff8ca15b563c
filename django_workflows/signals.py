"""Django signals for integrators.

- ``workflow_started(sender=Workflow, workflow_id, name, resumed)``: a run
  started, or started again (resume, rerun_from, mark_success).
- ``workflow_finished(sender=Workflow, workflow_id, name, status)``: a run
  reached success, failure or canceled.
- ``task_run_changed(sender=TaskRun, workflow_id, task_run_ids, status)``: task
  runs moved to ``status`` (several at once when a failure or a cancel
  touches a whole subtree).

The engine sends them with ``send_robust``: a receiver that raises is
logged (by Django, logger ``django.dispatch``) and never stops a run.
"""

from django.dispatch import Signal

workflow_started = Signal()
workflow_finished = Signal()
task_run_changed = Signal()
