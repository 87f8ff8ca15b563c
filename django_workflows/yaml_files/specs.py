"""What a YAML file holds, checked: workflows of task, group, chain and foreach steps."""

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import celery
from celery import current_app

from ..canvas import foreach
from ..definitions import DIRECTOR, Definition

#: Beat's name of the schedule a YAML workflow's ``periodic:`` makes.
SCHEDULE_SUFFIX = " (YAML)"


@dataclass
class TaskSpec:
    """One task call: its Celery name, extra args and kwargs, signature options."""

    task: str
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)


@dataclass
class ForeachSpec:
    """``task`` once per item of the previous step's result (``django_workflows.foreach``)."""

    task: TaskSpec


@dataclass
class CanvasSpec:
    """A named group (parallel) or chain (one after the other) of steps."""

    kind: str
    name: str
    steps: list


Step = TaskSpec | ForeachSpec | CanvasSpec


@dataclass
class Periodic:
    """When beat launches the workflow, and with which payload.

    ``legacy`` is the value of director's deprecated ``schedule:`` key it was
    read from, if it was.
    """

    payload: Any = field(default_factory=dict)
    interval: float | None = None
    crontab: tuple[str, str, str, str, str] | None = None  # m h dom moy dow
    timezone: str | None = None
    overlap: str = "allow"
    legacy: Any = None


@dataclass
class YamlWorkflow:
    """One workflow of a YAML file, checked, ready to build canvases."""

    name: str
    file: Path
    line: int | None
    steps: list[Step]
    description: str = ""
    queue: str | None = None
    queue_customs: dict[str, str] = field(default_factory=dict)
    hooks: dict[str, str] = field(default_factory=dict)
    schema: dict | None = None
    schema_file: Path | None = None
    periodic: Periodic | None = None
    #: director's ``retention: {offset: N}``: keep the newest N runs (None: the setting's).
    retention: int | None = None

    def task_names(self) -> set[str]:
        """Every Celery task name the workflow sends, hooks included."""
        return set(step_task_names(self.steps)) | set(self.hooks.values())

    def queue_for(self, task: str) -> str | None:
        """Director's routing: a task's custom queue, else the workflow's default."""
        return self.queue_customs.get(task, self.queue)

    def build(self, payload: Any, workflow_id: str | None = None) -> Any:
        """The canvas of one run, called as director calls it.

        Each task gets the keyword arguments ``workflow_id`` and ``payload``; the
        first step(s) get ``None`` as first argument, the result of director's
        ``start`` task that its chains begin with; the others get their previous
        step's result(s), as Celery's chain gives them.
        """
        kwargs = {"workflow_id": workflow_id, "payload": payload}
        return _chain(
            [self._build(step, kwargs, first=i == 0) for i, step in enumerate(self.steps)]
        )

    def _build(self, step: Step, kwargs: dict, first: bool) -> Any:
        if isinstance(step, TaskSpec):
            return self._signature(step, kwargs, first)
        if isinstance(step, ForeachSpec):
            return foreach(self._signature(step.task, kwargs, first=False))
        if step.kind == "chain":
            return _chain(
                [self._build(s, kwargs, first and i == 0) for i, s in enumerate(step.steps)]
            )
        members = [self._build(member, kwargs, first) for member in step.steps]
        # Celery (so director) runs a group of one task in a chain as that task:
        # the next step gets its result, not a one-item list.
        return members[0] if len(members) == 1 else celery.group(members)

    def _signature(self, spec: TaskSpec, kwargs: dict, first: bool) -> Any:
        options = copy.deepcopy(spec.options)
        queue = self.queue_for(spec.task)
        if queue and "queue" not in options:
            options["queue"] = queue
        args = [None, *spec.args] if first else spec.args
        kwargs = {**spec.kwargs, **kwargs}
        return celery.signature(
            spec.task, args=copy.deepcopy(args), kwargs=copy.deepcopy(kwargs), **options
        )

    def hook(self, outcome: str) -> Any:
        """The on_success / on_failure signature; the engine adds director's arguments."""
        task = self.hooks.get(outcome)
        if not task:
            return None
        queue = self.queue_for(task)
        return celery.signature(task, queue=queue) if queue else celery.signature(task)

    def definition(self) -> Definition:
        """The registry entry of this workflow."""

        def factory(payload: Any, workflow_id: str | None = None) -> Any:
            return self.build(payload, workflow_id)

        # Registry error messages name a factory by module and qualname.
        factory.__module__ = str(self.file)
        factory.__qualname__ = self.name
        factory.__doc__ = None
        factory.yaml_workflow = self  # type: ignore[attr-defined]
        return Definition(
            name=self.name,
            factory=factory,
            schema=self.schema,
            description=self.description,
            on_success=self.hook("success"),
            on_failure=self.hook("failure"),
            calling=DIRECTOR,
            retention=self.retention,
        )


def _chain(steps: list) -> Any:
    """``celery.chain`` of ``steps`` kept as written.

    Without options, ``celery.chain(*steps)`` folds the steps with ``|`` and
    turns each group followed by a task into a chord. Given an option it keeps
    them as they are: the engine reads the YAML's own structure (and does not
    warn about chord shapes that only native Celery runs wrong), while native
    Celery still makes the chords when it runs the chain.
    """
    return celery.chain(*steps, app=current_app)


def yaml_workflow(definition: Definition) -> YamlWorkflow | None:
    """The YAML workflow a registered definition was made from, if any."""
    return getattr(definition.factory, "yaml_workflow", None)


def step_task_names(steps: Iterable[Step]) -> Iterable[str]:
    for step in steps:
        if isinstance(step, TaskSpec):
            yield step.task
        elif isinstance(step, ForeachSpec):
            yield step.task.task
        else:
            yield from step_task_names(step.steps)
