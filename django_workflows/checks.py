"""System checks: malformed YAML definition files show up in ``manage.py check``.

Loading the files at startup never raises (a typo must not take a site
down), so this is where their problems surface: ``runserver``, ``migrate``
and every management command report them, each naming the file, the line,
the key path and what is wrong.
"""

from typing import Any

from celery import current_app
from django.core import checks

from . import yaml_files


@checks.register("django_workflows")
def check_definition_files(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Check the files of ``DJANGO_WORKFLOWS["DEFINITION_FILES"]`` as they are now."""
    if app_configs is not None and not any(c.name == "django_workflows" for c in app_configs):
        return []
    workflows, errors = yaml_files.check_files()
    messages: list[checks.CheckMessage] = [
        (checks.Warning if error.is_warning else checks.Error)(
            str(error), hint=error.hint, id=error.id
        )
        for error in errors
    ]
    return messages + _unknown_tasks(workflows)


_importing = False


def _unknown_tasks(workflows: list[yaml_files.YamlWorkflow]) -> list[checks.CheckMessage]:
    """Task names the project's Celery app does not know: most likely typos.

    The app's task modules are imported first, as a worker imports them
    (``autodiscover_tasks``, ``imports``, ``include``): ``manage.py check``
    runs before anything else would import them. A warning only: workers
    may define tasks the project does not list. A message naming a task no
    worker knows is dropped by Celery, and its run would wait for ever.
    """
    global _importing
    if not workflows or _importing:
        # Celery's Django fixup runs the checks while the modules are imported:
        # the outer call reports, once they are all in.
        return []
    _importing = True
    try:
        current_app.loader.import_default_modules()
    finally:
        _importing = False
    known = set(current_app.tasks.keys())
    return [
        checks.Warning(
            f"{workflow.file}, line {workflow.line}: {workflow.name}: task {task!r} is not "
            "registered with this process's Celery app.",
            hint="Check the spelling against @shared_task(name=...). If only your workers "
            f"import it, add {yaml_files.W_UNKNOWN_TASK!r} to SILENCED_SYSTEM_CHECKS.",
            id=yaml_files.W_UNKNOWN_TASK,
        )
        for workflow in workflows
        for task in sorted(workflow.task_names() - known)
    ]


#: The broker is this process's memory: no worker elsewhere will see a run.
W_MEMORY_BROKER = "django_workflows.W003"


@checks.register("django_workflows")
def check_broker(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A ``memory://`` broker outside eager mode: runs would wait for ever
    unless a worker runs in this very process."""
    conf = current_app.conf
    if conf.task_always_eager or not str(conf.broker_url or "").startswith("memory://"):
        return []
    return [
        checks.Warning(
            "Celery's broker is memory://: only a worker inside this process can "
            "see the workflows it launches; any other worker never will, and the "
            "runs stay queued.",
            hint="In tests, set CELERY_TASK_ALWAYS_EAGER = True (runs go inline) or "
            "use django_workflows.testing.worker(); otherwise set CELERY_BROKER_URL "
            "to a real broker (redis://, amqp://).",
            id=W_MEMORY_BROKER,
        )
    ]
