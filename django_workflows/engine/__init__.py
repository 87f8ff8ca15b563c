"""The engine: launch a run, move it forward as its tasks finish, operate on it.

One module per job:

- :mod:`.launch`: ``launch``, ``launch_canvas``: the run and its DAG saved in
  one transaction, the first tasks sent on commit.
- :mod:`.progress`: sending claimed task runs, and the outcome handlers the
  worker's signals call (start, retry, success, failure), finishing a run.
- :mod:`.operations`: ``resume``, ``rerun_from``, ``mark_success``,
  ``relaunch``, ``cancel`` (called through the model methods).
- :mod:`.recovery`: the recovery pass for claimed-but-unsent work, and the reaper.
- :mod:`.send` (broker sends), :mod:`.foreach` (runtime maps), :mod:`.replace`
  (``Task.replace`` inside a run), :mod:`.chords` (``add_to_chord``, a chord
  body's errbacks when its header fails), :mod:`.eager` (Celery's eager mode), :mod:`.hooks`
  (a definition's hooks), :mod:`.graph` (the DAG as rows and edges),
  :mod:`.counters` (the run's counters), :mod:`.transitions` (the table of
  allowed status moves), :mod:`.fastpath` (the per-task SQL writes).

Every status write is a guarded transition from :mod:`.transitions`; every
counter change goes through :mod:`.counters`.

The invariants each module keeps:

1. Every run reaches success, failure or canceled, or shows what it waits
   for: no path leaves a run ``running`` with nothing that will move it.
2. Nothing claimed is lost: a task run claimed for sending is ``queued`` in
   the claiming transaction and marked sent once the broker has it, or, a
   success's children, sent before the claim commits with the mark in the
   claim (:mod:`.send`); :func:`.recovery.recover` sends what a dead or
   failing sender left, and never what was sent.
3. Each dispatch is an attempt (the task run's ``claim``, carried by its
   message): a stale attempt's report never moves a newer attempt.
4. Nothing starts after ``cancel()`` returns; nothing a user did is erased.
"""

from .launch import launch, launch_canvas
from .operations import Plan, cancel, mark_success, relaunch, rerun_from, resume
from .progress import (
    hook_succeeded,
    send_claimed,
    task_added_to_chord,
    task_failed,
    task_replaced,
    task_retrying,
    task_started,
    task_succeeded,
)
from .recovery import HeaderUnread, WorkerLost, reap, recover

__all__ = [
    "HeaderUnread",
    "Plan",
    "WorkerLost",
    "cancel",
    "hook_succeeded",
    "launch",
    "launch_canvas",
    "mark_success",
    "reap",
    "recover",
    "relaunch",
    "rerun_from",
    "resume",
    "send_claimed",
    "task_added_to_chord",
    "task_failed",
    "task_replaced",
    "task_retrying",
    "task_started",
    "task_succeeded",
]
