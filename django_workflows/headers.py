"""The message headers that make a task part of a workflow run.

Written by the engine when it sends a task run (``engine.send``), read by
the signal handlers in the worker (``tracking``): one home for both sides.
A hook's message carries the run header and no node header.
"""

#: The run's id: its presence is what makes a task a workflow task.
RUN_HEADER = "django_workflows_run"
#: The task run's node index in its DAG (absent on a hook's message).
NODE_HEADER = "django_workflows_node"
#: The dispatch attempt (the task run's ``claim``): a report from a message of
#: an older attempt never moves the task run (a stale message is skipped).
ATTEMPT_HEADER = "django_workflows_attempt"
