"""Workflow definitions from YAML files, in celery-director's ``workflows.yml`` format.

A team coming from celery-director keeps its ``workflows.yml`` (and its
``schemas/`` folder) and lists it in ``DJANGO_WORKFLOWS["DEFINITION_FILES"]``.
Each workflow of each file becomes a :class:`~django_workflows.definitions.Definition`
whose factory builds a plain Celery canvas from the payload, exactly as
director does: the tasks run as a chain, each gets the previous step's
result(s) as its first positional argument and the payload as the keyword
argument ``payload``. Beyond director: nested groups and chains, per-task
args/kwargs/options and ``foreach``.

Loading never raises: every problem becomes a :class:`LoadError` naming the
file, the line, the key path (``example.ETL > tasks[2] > GROUP_1 > tasks``)
and what is wrong; ``django_workflows.checks`` reports them through Django's
system checks. A file with an error registers none of its workflows.

Modules: ``reader`` (YAML with line numbers), ``specs`` (what a file holds),
``checker`` (one file), ``loading`` (the configured files, registered),
``schedules`` (``periodic:`` on django-celery-beat), ``errors`` (check ids).
"""

from .checker import FileResult, load_file, schema_path
from .errors import W_UNKNOWN_TASK, LoadError
from .loading import (
    check_files,
    configured_files,
    load_definition_files,
    load_errors,
    loaded_workflows,
)
from .schedules import SyncResult, schedule_name, sync_after_migrate, sync_schedules
from .specs import SCHEDULE_SUFFIX, YamlWorkflow, yaml_workflow

__all__ = [
    "SCHEDULE_SUFFIX",
    "W_UNKNOWN_TASK",
    "FileResult",
    "LoadError",
    "SyncResult",
    "YamlWorkflow",
    "check_files",
    "configured_files",
    "load_definition_files",
    "load_errors",
    "load_file",
    "loaded_workflows",
    "schedule_name",
    "schema_path",
    "sync_after_migrate",
    "sync_schedules",
    "yaml_workflow",
]
