"""Settings of the fault-injection soak (benchmarks/soak.py).

The tests' settings (example project + test app, whose receivers raise while
a flag file exists) on the soak's private PostgreSQL and Redis (from the
environment), with DEBUG off and recovery tuned to a soak's time scale.
"""

import os

from tests.settings import *  # noqa: F403
from tests.settings import DJANGO_WORKFLOWS

DEBUG = False

# Variant (a): a task's message is acknowledged after the task, and given
# back to the broker when its worker process dies; variant (b): Celery's default.
ACKS_LATE = os.environ.get("DW_SOAK_ACKS_LATE") == "1"
CELERY_TASK_ACKS_LATE = ACKS_LATE
CELERY_TASK_REJECT_ON_WORKER_LOST = ACKS_LATE
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Messages a dead worker had taken but not acknowledged go back to the queue
# after this many seconds (Redis's default is an hour), looked for every 2 s
# (default: every 10th of 10 s ticks), and a restorer that died holds the
# lock for 15 s (default 5 minutes).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 10,
    "unacked_restore_interval": 2,
    "unacked_restore_throttle": 1,
    "unacked_mutex_expire": 15,
}
# Storing a result waits for a restarting Redis instead of failing the task.
CELERY_RESULT_BACKEND_ALWAYS_RETRY = True
CELERY_RESULT_BACKEND_MAX_RETRIES = 30
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_IMPORTS = ["benchmarks.soak_app"]

DJANGO_WORKFLOWS = {
    **DJANGO_WORKFLOWS,
    # The beat task django_workflows.reap, run by the soak every few seconds.
    "RECOVERY_GRACE": 5.0,
    # Longer than the visibility timeout: with acks_late, the task of a worker
    # killed whole comes back from the broker; reaped first, it would fail.
    "REAPER_GRACE": 15.0,
    # A message Redis lost across a restart (taken by a worker, never acked nor
    # restored) is sent again as a new attempt after this long.
    "QUEUE_TIMEOUT": 30.0,
}
