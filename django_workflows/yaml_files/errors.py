"""One problem of a definition file, and the check ids that name each kind."""

from dataclasses import dataclass

#: Check ids, one per kind of problem (see README, "YAML definitions").
E_SETTING = "django_workflows.E001"  # DEFINITION_FILES is not a list of paths
E_READ = "django_workflows.E002"  # a file cannot be read
E_SYNTAX = "django_workflows.E003"  # not YAML
E_STRUCTURE = "django_workflows.E004"  # tasks, groups, types, keys, queue, hooks, options
E_SCHEMA = "django_workflows.E005"  # the payload schema file
E_PERIODIC = "django_workflows.E006"  # periodic: interval, crontab, payload, overlap
E_NAME = "django_workflows.E007"  # a workflow name
E_CONFLICT = "django_workflows.E008"  # a name defined twice
E_UNEXPECTED = "django_workflows.E009"  # a bug of the loader itself, reported, not raised
W_QUEUE_CUSTOMS = "django_workflows.W001"  # queue customs name a task the workflow lacks
W_UNKNOWN_TASK = "django_workflows.W002"  # a task this process's Celery app does not know
# W003 is the memory:// broker warning of django_workflows.checks
W_LEGACY_SCHEDULE = "django_workflows.W004"  # periodic: schedule, director's deprecated key


@dataclass(frozen=True)
class LoadError:
    """One problem of a definition file, with enough context to fix it."""

    id: str
    file: str
    message: str
    path: str = ""
    line: int | None = None
    hint: str | None = None

    @property
    def is_warning(self) -> bool:
        return ".W" in self.id

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}, line {self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
