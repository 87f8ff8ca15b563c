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
"""

import copy
import json
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import celery
import jsonschema
import yaml
from celery import current_app
from django.conf import settings
from django.db import DatabaseError, router, transaction
from jsonschema.validators import validator_for

from .canvas import foreach
from .conf import get_setting
from .definitions import Definition, Registry, registry

logger = logging.getLogger(__name__)

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

#: Beat's name of the schedule a YAML workflow's ``periodic:`` makes.
SCHEDULE_SUFFIX = " (YAML)"
_NAME_MAX = 200 - len(SCHEDULE_SUFFIX)  # PeriodicTask.name and Workflow.name hold 200

_TYPES = ("task", "group", "chain", "foreach")
_WORKFLOW_KEYS = ("tasks", "description", "queue", "hooks", "schema", "periodic")
_TASK_KEYS = ("type", "args", "kwargs", "options")
_FOREACH_KEYS = ("type", "task", "args", "kwargs", "options")
_CANVAS_KEYS = ("type", "tasks")
_QUEUE_KEYS = ("default", "customs")
_HOOK_KEYS = ("success", "failure")
_PERIODIC_KEYS = ("interval", "crontab", "payload", "overlap", "timezone")
_CRONTAB_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _non_negative(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value) and value >= 0


#: Signature options a task item may set, with the check each value must pass.
#: Celery's own wiring (task_id, link, chord...) is the engine's business.
_OPTIONS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "queue": (lambda v: isinstance(v, str) and bool(v), "a queue name"),
    "routing_key": (lambda v: isinstance(v, str), "a string"),
    "exchange": (lambda v: isinstance(v, str), "a string"),
    "priority": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255,
        "an integer from 0 to 255",
    ),
    "countdown": (_non_negative, "a number of seconds"),
    "expires": (_non_negative, "a number of seconds"),
    "time_limit": (_non_negative, "a number of seconds"),
    "soft_time_limit": (_non_negative, "a number of seconds"),
    "retry": (lambda v: isinstance(v, bool), "true or false"),
    "retry_policy": (lambda v: isinstance(v, dict), "a mapping"),
    "headers": (lambda v: isinstance(v, dict), "a mapping"),
    "ignore_result": (lambda v: isinstance(v, bool), "true or false"),
    "shadow": (lambda v: isinstance(v, str), "a string"),
}


# -- errors -----------------------------------------------------------------------------------


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


# -- reading YAML with line numbers -----------------------------------------------------------


class _Map(dict):
    """A YAML mapping that remembers where it and each of its keys are."""

    line: int = 0
    key_lines: dict
    duplicates: list


class _Seq(list):
    """A YAML sequence that remembers the line of each item."""

    line: int = 0
    item_lines: list


class _Loader(yaml.SafeLoader):
    """Safe YAML, keeping line numbers for error messages; dates stay strings (JSON)."""


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Any:
    data = _Map()
    data.line, data.key_lines, data.duplicates = node.start_mark.line + 1, {}, []
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=False)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found an unhashable key",
                key_node.start_mark,
            ) from None
        line = key_node.start_mark.line + 1
        if key in data.key_lines:
            data.duplicates.append((key, line))
        data[key] = loader.construct_object(value_node, deep=False)
        data.key_lines[key] = line


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> Any:
    data = _Seq()
    data.line = node.start_mark.line + 1
    data.item_lines = [item.start_mark.line + 1 for item in node.value]
    yield data
    data.extend(loader.construct_sequence(node))


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_str)


def _key_line(mapping: Any, key: Any, default: int | None) -> int | None:
    return getattr(mapping, "key_lines", {}).get(key, default)


def _item_line(seq: Any, index: int, default: int | None) -> int | None:
    lines = getattr(seq, "item_lines", [])
    return lines[index] if index < len(lines) else default


def _describe(value: Any) -> str:
    kind = {
        dict: "a mapping",
        _Map: "a mapping",
        list: "a list",
        _Seq: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "nothing (null)",
    }.get(type(value), type(value).__name__)
    shown = repr(value) if not isinstance(value, dict | list) else ""
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{kind} {shown}".strip()


# -- what a file holds ------------------------------------------------------------------------


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
    """When beat launches the workflow, and with which payload."""

    payload: Any = field(default_factory=dict)
    interval: float | None = None
    crontab: tuple[str, str, str, str, str] | None = None  # m h dom moy dow
    timezone: str | None = None
    overlap: str = "allow"


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

    def task_names(self) -> set[str]:
        """Every Celery task name the workflow sends, hooks included."""
        return set(_task_names(self.steps)) | set(self.hooks.values())

    def queue_for(self, task: str) -> str | None:
        """Director's routing: a task's custom queue, else the workflow's default."""
        return self.queue_customs.get(task, self.queue)

    def build(self, payload: Any) -> Any:
        """The canvas of one run: a chain of the steps, each task given ``payload=``."""
        return _chain([self._build(step, payload) for step in self.steps])

    def _build(self, step: Step, payload: Any) -> Any:
        if isinstance(step, TaskSpec):
            return self._signature(step, payload)
        if isinstance(step, ForeachSpec):
            return foreach(self._signature(step.task, payload))
        members = [self._build(member, payload) for member in step.steps]
        if step.kind == "chain":
            return _chain(members)
        # Celery (so director) runs a group of one task in a chain as that task:
        # the next step gets its result, not a one-item list.
        return members[0] if len(members) == 1 else celery.group(members)

    def _signature(self, spec: TaskSpec, payload: Any) -> Any:
        options = copy.deepcopy(spec.options)
        queue = self.queue_for(spec.task)
        if queue and "queue" not in options:
            options["queue"] = queue
        kwargs = {**copy.deepcopy(spec.kwargs), "payload": payload}
        return celery.signature(spec.task, args=copy.deepcopy(spec.args), kwargs=kwargs, **options)

    def hook(self, outcome: str) -> Any:
        """The on_success / on_failure signature: ``hook(workflow_id, result_or_error)``."""
        task = self.hooks.get(outcome)
        if not task:
            return None
        queue = self.queue_for(task)
        return celery.signature(task, queue=queue) if queue else celery.signature(task)

    def definition(self) -> Definition:
        """The registry entry of this workflow."""

        def factory(payload: Any) -> Any:
            return self.build(payload)

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


# -- checking one file ------------------------------------------------------------------------


@dataclass
class FileResult:
    """What one file holds: its valid workflows, and every problem found."""

    file: Path
    workflows: list[YamlWorkflow] = field(default_factory=list)
    errors: list[LoadError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(not e.is_warning for e in self.errors)


Path_ = tuple[str, ...]


def _at(path: Path_, key: Any) -> Path_:
    return (*path, str(key))


def _index(path: Path_, i: int) -> Path_:
    return (*path[:-1], f"{path[-1]}[{i}]")


class _FileChecker:
    """Walks one parsed file, collecting errors with their key paths and lines."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.errors: list[LoadError] = []

    def error(
        self, id: str, path: Path_, line: int | None, message: str, hint: str | None = None
    ) -> None:
        self.errors.append(
            LoadError(
                id=id,
                file=str(self.file),
                message=message,
                path=" > ".join(path),
                line=line,
                hint=hint,
            )
        )

    def mapping(
        self, value: Any, path: Path_, line: int | None, allowed: Iterable[str], what: str
    ) -> bool:
        """Is ``value`` a mapping with only ``allowed`` keys? Report why not."""
        if not isinstance(value, dict):
            self.error(
                E_STRUCTURE, path, line, f"{what} must be a mapping, got {_describe(value)}."
            )
            return False
        allowed = tuple(allowed)
        ok = True
        for key in value:
            if key not in allowed:
                self.error(
                    E_STRUCTURE,
                    path,
                    _key_line(value, key, line),
                    f"unknown key {key!r}; {what} takes {', '.join(allowed)}.",
                )
                ok = False
        for key, key_line in getattr(value, "duplicates", []):
            self.error(
                E_STRUCTURE, path, key_line, f"{key!r} appears twice; YAML keeps only the last."
            )
            ok = False
        return ok

    # -- the file and its workflows

    def check(self, data: Any) -> list[YamlWorkflow]:
        if data is None:
            self.error(
                E_STRUCTURE,
                (),
                None,
                "the file is empty; it should map workflow names to their definitions.",
            )
            return []
        if not isinstance(data, dict):
            self.error(
                E_STRUCTURE,
                (),
                getattr(data, "line", 1),
                "the file must map workflow names (project.name) to their definitions, "
                f"got {_describe(data)}.",
            )
            return []
        for key, key_line in getattr(data, "duplicates", []):
            self.error(
                E_NAME,
                (str(key),),
                key_line,
                "this workflow is defined twice in the file; YAML keeps only the last.",
            )
        workflows = []
        for name, body in data.items():
            workflow = self.workflow(name, body, _key_line(data, name, None))
            if workflow is not None:
                workflows.append(workflow)
        return workflows

    def workflow(self, name: Any, body: Any, line: int | None) -> YamlWorkflow | None:
        path = (str(name),)
        errors_before = len(self.errors)
        if not isinstance(name, str) or "." not in name or not name.strip():
            self.error(
                E_NAME,
                path,
                line,
                f"a workflow name is a string with a dot, as project.name; got {_describe(name)}.",
                hint='celery-director names workflows "project.name", e.g. example.ETL.',
            )
        elif len(name) > _NAME_MAX:
            self.error(E_NAME, path, line, f"a workflow name has at most {_NAME_MAX} characters.")
        self.mapping(body, path, line, _WORKFLOW_KEYS, "a workflow")
        if not isinstance(body, dict):
            return None
        body_line = getattr(body, "line", line)

        steps: list[Step] = []
        if "tasks" not in body:
            self.error(E_STRUCTURE, path, body_line, "a workflow needs tasks: a list of tasks.")
        else:
            steps = self.steps(body["tasks"], _at(path, "tasks"), _key_line(body, "tasks", line))
            if steps and self.first_needs_input(steps[0]):
                self.error(
                    E_STRUCTURE,
                    _index(_at(path, "tasks"), 0),
                    _item_line(body["tasks"], 0, line),
                    "foreach cannot come first: it runs its task once per item of the "
                    "previous step's result.",
                )

        description = body.get("description", "")
        if description is None:
            description = ""
        if not isinstance(description, str):
            self.error(
                E_STRUCTURE,
                _at(path, "description"),
                _key_line(body, "description", line),
                f"description must be a string, got {_describe(description)}.",
            )
        queue, customs = self.queue(body, path, line)
        hooks = self.hooks(body, path, line)
        self.customs_warnings(body, steps, hooks, path, line)
        schema, schema_file = self.schema(body, path, line)
        periodic = self.periodic(body, path, line, schema)
        if len(self.errors) > errors_before and any(
            not e.is_warning for e in self.errors[errors_before:]
        ):
            return None
        return YamlWorkflow(
            name=name,
            file=self.file,
            line=line,
            steps=steps,
            description=description.strip(),
            queue=queue,
            queue_customs=customs,
            hooks=hooks,
            schema=schema,
            schema_file=schema_file,
            periodic=periodic,
        )

    # -- tasks

    def steps(self, items: Any, path: Path_, line: int | None) -> list[Step]:
        if not isinstance(items, list):
            self.error(E_STRUCTURE, path, line, f"tasks must be a list, got {_describe(items)}.")
            return []
        if not items:
            self.error(E_STRUCTURE, path, line, "tasks is empty: there is nothing to run.")
            return []
        steps = []
        for i, item in enumerate(items):
            step = self.step(item, _index(path, i), _item_line(items, i, line))
            if step is not None:
                steps.append(step)
        return steps

    def step(self, item: Any, path: Path_, line: int | None) -> Step | None:
        if isinstance(item, str):
            if not item.strip():
                self.error(E_STRUCTURE, path, line, "a task name cannot be empty.")
                return None
            return TaskSpec(task=item)
        if not isinstance(item, dict):
            self.error(
                E_STRUCTURE,
                path,
                line,
                f"a task is a task name or a mapping NAME: {{...}}, got {_describe(item)}.",
            )
            return None
        if len(item) != 1:
            keys = ", ".join(map(str, item))
            self.error(
                E_STRUCTURE,
                path,
                line,
                f"an item with settings is a mapping with one key, the task or group name; "
                f"got {len(item)} keys ({keys}).",
                hint="Indent the settings (type, tasks, args...) under the name.",
            )
            return None
        name, spec = next(iter(item.items()))
        path = _at(path, name)
        line = _key_line(item, name, line)
        if not isinstance(name, str) or not name.strip():
            self.error(E_STRUCTURE, path, line, f"a name must be a string, got {_describe(name)}.")
            return None
        if spec is None:
            return TaskSpec(task=name)
        if not isinstance(spec, dict):
            self.error(
                E_STRUCTURE,
                path,
                line,
                f"the settings of {name!r} must be a mapping (type, tasks, args, kwargs, "
                f"options...), got {_describe(spec)}.",
            )
            return None
        kind = spec.get("type", "task")
        if kind not in _TYPES:
            self.error(
                E_STRUCTURE,
                _at(path, "type"),
                _key_line(spec, "type", line),
                f"unknown type {kind!r}; a type is one of {', '.join(_TYPES)}.",
            )
            return None
        if kind in ("group", "chain"):
            self.mapping(spec, path, line, _CANVAS_KEYS, f"a {kind}")
            if "tasks" not in spec:
                self.error(
                    E_STRUCTURE, path, line, f"a {kind} needs tasks: a list of tasks to run."
                )
                return None
            steps = self.steps(spec["tasks"], _at(path, "tasks"), _key_line(spec, "tasks", line))
            return CanvasSpec(kind=kind, name=name, steps=steps) if steps else None
        if kind == "foreach":
            self.mapping(spec, path, line, _FOREACH_KEYS, "a foreach")
            task = spec.get("task", name)
            if not isinstance(task, str) or not task.strip():
                self.error(
                    E_STRUCTURE,
                    _at(path, "task"),
                    _key_line(spec, "task", line),
                    f"task must be a task name, got {_describe(task)}.",
                )
                return None
            call = self.call(task, spec, path, line)
            return ForeachSpec(task=call) if call else None
        self.mapping(spec, path, line, _TASK_KEYS, "a task")
        return self.call(name, spec, path, line)

    def call(self, task: str, spec: dict, path: Path_, line: int | None) -> TaskSpec | None:
        """The args, kwargs and options of one task item."""
        before = len(self.errors)
        args = spec.get("args", [])
        kwargs = spec.get("kwargs", {})
        options = spec.get("options", {})
        args = [] if args is None else args
        kwargs = {} if kwargs is None else kwargs
        options = {} if options is None else options
        if not isinstance(args, list):
            self.error(
                E_STRUCTURE,
                _at(path, "args"),
                _key_line(spec, "args", line),
                f"args must be a list, got {_describe(args)}.",
            )
        else:
            self.json(args, _at(path, "args"), _key_line(spec, "args", line))
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            self.error(
                E_STRUCTURE,
                _at(path, "kwargs"),
                _key_line(spec, "kwargs", line),
                f"kwargs must be a mapping of names to values, got {_describe(kwargs)}.",
            )
        else:
            if "payload" in kwargs:
                self.error(
                    E_STRUCTURE,
                    _at(_at(path, "kwargs"), "payload"),
                    _key_line(kwargs, "payload", line),
                    "payload is reserved: every task receives the run's payload under that name.",
                )
            self.json(kwargs, _at(path, "kwargs"), _key_line(spec, "kwargs", line))
        opath, oline = _at(path, "options"), _key_line(spec, "options", line)
        if self.mapping(options, opath, oline, _OPTIONS, "options"):
            for key, value in options.items():
                check, expected = _OPTIONS[key]
                if not check(value):
                    self.error(
                        E_STRUCTURE,
                        _at(opath, key),
                        _key_line(options, key, line),
                        f"{key} must be {expected}, got {_describe(value)}.",
                    )
            self.json(options, opath, oline)
        if len(self.errors) > before:
            return None
        return TaskSpec(task=task, args=list(args), kwargs=dict(kwargs), options=dict(options))

    def json(self, value: Any, path: Path_, line: int | None, id: str = E_STRUCTURE) -> bool:
        """Values travel as JSON, the only serializer django-workflows uses."""
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            self.error(id, path, line, f"not JSON-serializable: {exc}.")
            return False
        return True

    @staticmethod
    def first_needs_input(step: Step) -> bool:
        """Would this step, run first, contain a foreach with no previous result?"""
        if isinstance(step, ForeachSpec):
            return True
        if isinstance(step, CanvasSpec):
            if step.kind == "group":
                return any(_FileChecker.first_needs_input(s) for s in step.steps)
            return bool(step.steps) and _FileChecker.first_needs_input(step.steps[0])
        return False

    # -- queue, hooks, schema, periodic

    def queue(self, body: dict, path: Path_, line: int | None) -> tuple[str | None, dict]:
        if "queue" not in body or body["queue"] is None:
            return None, {}
        value = body["queue"]
        qpath, qline = _at(path, "queue"), _key_line(body, "queue", line)
        if isinstance(value, str):
            if not value.strip():
                self.error(E_STRUCTURE, qpath, qline, "a queue name cannot be empty.")
            return value, {}
        if not isinstance(value, dict):
            self.error(
                E_STRUCTURE,
                qpath,
                qline,
                "queue is a queue name or a mapping with default and customs, "
                f"got {_describe(value)}.",
            )
            return None, {}
        if not self.mapping(value, qpath, qline, _QUEUE_KEYS, "queue"):
            return None, {}
        default = value.get("default")
        if default is not None and (not isinstance(default, str) or not default.strip()):
            self.error(
                E_STRUCTURE,
                _at(qpath, "default"),
                _key_line(value, "default", qline),
                f"default must be a queue name, got {_describe(default)}.",
            )
        customs = value.get("customs") or {}
        cpath, cline = _at(qpath, "customs"), _key_line(value, "customs", qline)
        if not isinstance(customs, dict):
            self.error(
                E_STRUCTURE,
                cpath,
                cline,
                f"customs must map task names to queue names, got {_describe(customs)}.",
            )
            return default, {}
        for task, queue in customs.items():
            if not isinstance(task, str) or not isinstance(queue, str) or not queue.strip():
                self.error(
                    E_STRUCTURE,
                    _at(cpath, task),
                    _key_line(customs, task, cline),
                    f"customs maps a task name to a queue name, got {_describe(queue)}.",
                )
        return default, dict(customs)

    def customs_warnings(
        self, body: dict, steps: list[Step], hooks: dict, path: Path_, line: int | None
    ) -> None:
        """A custom queue for a task the workflow does not run is most likely a typo."""
        queue = body.get("queue")
        customs = queue.get("customs") if isinstance(queue, dict) else None
        if not isinstance(customs, dict):
            return
        names = set(_task_names(steps)) | {h for h in hooks.values() if isinstance(h, str)}
        line = _key_line(queue, "customs", _key_line(body, "queue", line))
        for task in customs:
            if task not in names:
                self.error(
                    W_QUEUE_CUSTOMS,
                    (*path, "queue", "customs", str(task)),
                    _key_line(customs, task, line),
                    f"{task!r} is not a task of this workflow; is it misspelled?",
                )

    def hooks(self, body: dict, path: Path_, line: int | None) -> dict[str, str]:
        if body.get("hooks") is None:
            return {}
        value = body["hooks"]
        hpath, hline = _at(path, "hooks"), _key_line(body, "hooks", line)
        if not self.mapping(value, hpath, hline, _HOOK_KEYS, "hooks"):
            return {}
        for outcome, task in value.items():
            if not isinstance(task, str) or not task.strip():
                self.error(
                    E_STRUCTURE,
                    _at(hpath, outcome),
                    _key_line(value, outcome, hline),
                    f"a hook is a task name, got {_describe(task)}.",
                )
        return dict(value)

    def schema(self, body: dict, path: Path_, line: int | None) -> tuple[dict | None, Path | None]:
        if body.get("schema") is None:
            return None, None
        value = body["schema"]
        spath, sline = _at(path, "schema"), _key_line(body, "schema", line)
        if not isinstance(value, str) or not value.strip():
            self.error(
                E_SCHEMA,
                spath,
                sline,
                f"schema is a schema name or a file path, got {_describe(value)}.",
            )
            return None, None
        file = schema_path(self.file, value)
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            self.error(
                E_SCHEMA,
                spath,
                sline,
                f"schema file not found: {file}.",
                hint="A name without extension means schemas/NAME.json next to the YAML file; "
                "a path is relative to the YAML file's folder.",
            )
            return None, None
        except (OSError, UnicodeDecodeError) as exc:
            self.error(E_SCHEMA, spath, sline, f"cannot read the schema file {file}: {exc}.")
            return None, None
        try:
            if file.suffix.lower() in (".yml", ".yaml"):
                schema = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
            else:
                schema = json.loads(text)
        except json.JSONDecodeError as exc:
            self.error(
                E_SCHEMA,
                spath,
                sline,
                f"the schema file {file} is not JSON: {exc.msg} (its line {exc.lineno}).",
            )
            return None, None
        except yaml.YAMLError as exc:
            self.error(E_SCHEMA, spath, sline, f"the schema file {file} is not YAML: {exc}.")
            return None, None
        if not isinstance(schema, dict):
            self.error(
                E_SCHEMA,
                spath,
                sline,
                f"the schema in {file} must be a JSON object, got {_describe(schema)}.",
            )
            return None, None
        try:
            validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = "/".join(str(p) for p in exc.path)
            self.error(
                E_SCHEMA,
                spath,
                sline,
                f"{file} is not a valid JSON Schema: {exc.message}"
                + (f" (at {where})." if where else "."),
            )
            return None, None
        return schema, file

    def periodic(
        self, body: dict, path: Path_, line: int | None, schema: dict | None
    ) -> Periodic | None:
        if body.get("periodic") is None:
            return None
        value = body["periodic"]
        ppath, pline = _at(path, "periodic"), _key_line(body, "periodic", line)
        if not isinstance(value, dict):
            self.error(
                E_PERIODIC,
                ppath,
                pline,
                "periodic is a mapping with interval (seconds) or crontab "
                f'("m h dom moy dow"), got {_describe(value)}.',
            )
            return None
        before = len(self.errors)
        for key in value:
            if key not in _PERIODIC_KEYS:
                self.error(
                    E_PERIODIC,
                    ppath,
                    _key_line(value, key, pline),
                    f"unknown key {key!r}; periodic takes {', '.join(_PERIODIC_KEYS)}.",
                )
        kinds = [k for k in ("interval", "crontab") if k in value]
        if len(kinds) != 1:
            self.error(
                E_PERIODIC,
                ppath,
                pline,
                "periodic needs either interval (seconds) or crontab, not both."
                if kinds
                else "periodic needs interval (seconds) or crontab.",
            )
        periodic = Periodic()
        if "interval" in value:
            interval = value["interval"]
            if not _is_number(interval) or not math.isfinite(interval) or interval <= 0:
                self.error(
                    E_PERIODIC,
                    _at(ppath, "interval"),
                    _key_line(value, "interval", pline),
                    f"interval is a positive number of seconds, got {_describe(interval)}.",
                )
            elif interval * 1_000_000 < 1:
                self.error(
                    E_PERIODIC,
                    _at(ppath, "interval"),
                    _key_line(value, "interval", pline),
                    "interval is shorter than a microsecond.",
                )
            else:
                periodic.interval = interval
        if "crontab" in value:
            periodic.crontab = self.crontab(
                value["crontab"], _at(ppath, "crontab"), _key_line(value, "crontab", pline)
            )
        if value.get("timezone") is not None:
            periodic.timezone = self.timezone(
                value["timezone"], _at(ppath, "timezone"), _key_line(value, "timezone", pline)
            )
        if "overlap" in value:
            periodic.overlap = self.overlap(
                value["overlap"], _at(ppath, "overlap"), _key_line(value, "overlap", pline)
            )
        payload = value.get("payload")
        payload = {} if payload is None else payload
        ypath, yline = _at(ppath, "payload"), _key_line(value, "payload", pline)
        if self.json(payload, ypath, yline, id=E_PERIODIC) and schema is not None:
            try:
                validator = validator_for(schema)(schema)
            except Exception:  # noqa: BLE001 - the schema's own error is reported already
                validator = None
            for error in validator.iter_errors(payload) if validator else ():
                where = ".".join(str(p) for p in error.absolute_path) or "(payload)"
                self.error(
                    E_PERIODIC,
                    ypath,
                    yline,
                    f"the payload does not fit the workflow's schema: {where}: {error.message}",
                )
        periodic.payload = payload
        return periodic if len(self.errors) == before else None

    def crontab(self, value: Any, path: Path_, line: int | None) -> tuple | None:
        from django.core.exceptions import ValidationError
        from django_celery_beat import validators

        if not isinstance(value, str) or len(value.split()) != 5:
            self.error(
                E_PERIODIC,
                path,
                line,
                'crontab is a string of 5 fields, "minute hour day-of-month month '
                f'day-of-week" (e.g. "0 */3 * * *"), got {_describe(value)}.',
            )
            return None
        fields = tuple(value.split())
        ok = True
        for name, text in zip(_CRONTAB_FIELDS, fields, strict=True):
            try:
                getattr(validators, f"{name}_validator")(text)
            except (ValidationError, ValueError) as exc:
                reason = "; ".join(getattr(exc, "messages", [str(exc)]))
                self.error(
                    E_PERIODIC,
                    path,
                    line,
                    f"invalid {name.replace('_', ' ')} {text!r} in {value!r}: {reason}",
                )
                ok = False
        return fields if ok else None  # type: ignore[return-value]

    def timezone(self, value: Any, path: Path_, line: int | None) -> str | None:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
            self.error(E_PERIODIC, path, line, f"unknown time zone {value!r}.")
            return None
        return value

    def overlap(self, value: Any, path: Path_, line: int | None) -> str:
        from .models import OverlapPolicy

        if value not in OverlapPolicy.values:
            self.error(
                E_PERIODIC,
                path,
                line,
                f"overlap is one of {', '.join(OverlapPolicy.values)}, got {_describe(value)}.",
            )
            return OverlapPolicy.ALLOW
        return value


def _task_names(steps: Iterable[Step]) -> Iterable[str]:
    for step in steps:
        if isinstance(step, TaskSpec):
            yield step.task
        elif isinstance(step, ForeachSpec):
            yield step.task.task
        else:
            yield from _task_names(step.steps)


def schema_path(yaml_file: Path, value: str) -> Path:
    """Where ``schema: value`` points: director's ``schemas/NAME.json``, or a path.

    Both are relative to the YAML file's folder, so a director project's
    ``workflows.yml`` and ``schemas/`` folder move over together.
    """
    path = Path(value)
    if not path.suffix:
        path = Path("schemas") / f"{value}.json"
    return path if path.is_absolute() else yaml_file.parent / path


def load_file(path: str | Path) -> FileResult:
    """Read and check one YAML file; never raises, never registers anything."""
    file = Path(path)
    result = FileResult(file=file)
    checker = _FileChecker(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        checker.error(E_READ, (), None, "no such file.")
    except IsADirectoryError:
        checker.error(E_READ, (), None, "this is a folder, not a YAML file.")
    except (OSError, UnicodeDecodeError) as exc:
        checker.error(E_READ, (), None, f"cannot read the file: {exc}.")
    else:
        try:
            data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            message = f"invalid YAML: {exc.problem or exc.context}"
            if mark is not None:
                message += f" (column {mark.column + 1})"
            if exc.context and exc.problem and exc.context_mark is not None:
                message += f", {exc.context} that starts on line {exc.context_mark.line + 1}"
            checker.error(E_SYNTAX, (), mark.line + 1 if mark else None, message + ".")
        except yaml.YAMLError as exc:
            checker.error(E_SYNTAX, (), None, f"invalid YAML: {exc}")
        else:
            try:
                result.workflows = checker.check(data)
            except Exception as exc:  # noqa: BLE001 - startup must not fail on the loader's bug
                logger.exception("Could not check %s", file)
                checker.error(E_UNEXPECTED, (), None, f"could not be checked: {exc!r}.")
    result.errors = checker.errors
    if not result.ok:
        result.workflows = []
    return result


# -- all configured files ---------------------------------------------------------------------


def configured_files() -> tuple[list[Path], list[LoadError]]:
    """The paths of ``DJANGO_WORKFLOWS["DEFINITION_FILES"]``, relative ones under BASE_DIR."""
    value = get_setting("DEFINITION_FILES")
    where = 'settings.DJANGO_WORKFLOWS["DEFINITION_FILES"]'
    if isinstance(value, str | Path) or not isinstance(value, list | tuple):
        return [], [
            LoadError(
                id=E_SETTING,
                file=where,
                message=f"must be a list of file paths, got {_describe(value)}.",
            )
        ]
    base = Path(getattr(settings, "BASE_DIR", None) or Path.cwd())
    paths, errors = [], []
    for i, item in enumerate(value):
        if not isinstance(item, str | Path) or not str(item):
            errors.append(
                LoadError(
                    id=E_SETTING,
                    file=where,
                    message=f"item {i} must be a file path, got {_describe(item)}.",
                )
            )
            continue
        path = Path(item).expanduser()
        paths.append(path if path.is_absolute() else base / path)
    return paths, errors


def check_files(
    paths: Iterable[str | Path] | None = None, into: Registry | None = None
) -> tuple[list[YamlWorkflow], list[LoadError]]:
    """Check files (default: the setting's) together; nothing is registered.

    A name already registered by a ``workflows.py`` module, or defined by
    an earlier file, is an error of the later file.
    """
    into = registry if into is None else into
    errors: list[LoadError] = []
    if paths is None:
        paths, errors = configured_files()
    workflows: list[YamlWorkflow] = []
    seen: dict[str, YamlWorkflow] = {}
    for path in paths:
        result = load_file(path)
        file_errors = list(result.errors)
        for workflow in result.workflows:
            earlier = seen.get(workflow.name)
            registered = workflow.name in into and into.get(workflow.name)
            if earlier is not None:
                where = f"{earlier.file}, line {earlier.line}"
            elif registered and yaml_workflow(registered) is None:
                where = f"{registered.factory.__module__}.{registered.factory.__qualname__}"
            else:
                seen[workflow.name] = workflow
                continue
            file_errors.append(
                LoadError(
                    id=E_CONFLICT,
                    file=str(workflow.file),
                    path=workflow.name,
                    line=workflow.line,
                    message=f"this workflow is already defined in {where}.",
                    hint="Give one of them another name.",
                )
            )
        errors.extend(file_errors)
        if all(e.is_warning for e in file_errors):
            workflows.extend(result.workflows)
    return workflows, errors


@dataclass
class _State:
    workflows: dict[str, YamlWorkflow] = field(default_factory=dict)
    errors: list[LoadError] = field(default_factory=list)


_state = _State()


def load_definition_files(
    paths: Iterable[str | Path] | None = None, into: Registry | None = None
) -> list[LoadError]:
    """Register every workflow of valid files (default: the setting's); return the problems.

    Called at startup, after the ``workflows.py`` modules; calling it again
    replaces what the previous call registered. Never raises.
    """
    into = registry if into is None else into
    for name, workflow in _state.workflows.items():
        if name in into and yaml_workflow(into.get(name)) is workflow:
            into.unregister(name)
    _state.workflows = {}
    try:
        workflows, errors = check_files(paths, into=into)
        for workflow in workflows:
            into.register(workflow.definition())
            _state.workflows[workflow.name] = workflow
    except Exception as exc:  # noqa: BLE001 - startup must not fail on the loader's bug
        logger.exception("Could not load the YAML workflow definitions")
        errors = [LoadError(id=E_UNEXPECTED, file="DEFINITION_FILES", message=repr(exc))]
    _state.errors = errors
    for error in errors:
        (logger.warning if error.is_warning else logger.error)("%s", error)
    return errors


def loaded_workflows() -> list[YamlWorkflow]:
    """The YAML workflows registered by the last :func:`load_definition_files`."""
    return list(_state.workflows.values())


def load_errors() -> list[LoadError]:
    """The problems found by the last :func:`load_definition_files`."""
    return list(_state.errors)


# -- periodic: schedules on django-celery-beat ------------------------------------------------


def schedule_name(workflow: str) -> str:
    """Beat's name of the schedule made from a YAML workflow's ``periodic:``."""
    return f"{workflow}{SCHEDULE_SUFFIX}"


@dataclass
class SyncResult:
    """What :func:`sync_schedules` did, schedule name by schedule name."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: Why removed schedules were left alone (files with errors), if they were.
    kept_because: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.disabled)


def sync_schedules(workflows: Iterable[YamlWorkflow] | None = None) -> SyncResult:
    """Make beat's schedules match the ``periodic:`` of the YAML workflows.

    Each workflow with ``periodic:`` gets a ``PeriodicTask`` named
    ``"<name> (YAML)"`` (task ``django_workflows.launch_workflow``) and its
    ``WorkflowSchedule``; YAML-made schedules whose workflow lost ``periodic:``
    are disabled, not deleted, so their runs and fires stay linked. The files
    are the source of truth: an edit made in the admin is put back. Running
    it again changes nothing. Default: the loaded workflows; while a
    configured file has errors, nothing is disabled (its workflows are not
    loaded, yet they may still be periodic).
    """
    from django_celery_beat.models import PeriodicTask, PeriodicTasks

    from .models import WorkflowSchedule
    from .schedules import LAUNCH_TASK, task_kwargs

    result = SyncResult()
    if workflows is None:
        workflows = loaded_workflows()
        broken = sorted({e.file for e in _state.errors if not e.is_warning})
        if broken:
            result.kept_because = (
                f"{', '.join(broken)} could not be loaded: no schedule is disabled until "
                "it is fixed (see manage.py check)."
            )
    wanted: set[str] = set()
    with transaction.atomic(using=router.db_for_write(PeriodicTask)):
        for workflow in workflows:
            if workflow.periodic is None:
                continue
            name = schedule_name(workflow.name)
            wanted.add(name)
            periodic = workflow.periodic
            interval, crontab = _beat_schedule(periodic)
            desired = {
                "task": LAUNCH_TASK,
                "interval": interval,
                "crontab": crontab,
                "solar": None,
                "clocked": None,
                "enabled": True,
                "one_off": False,
                "description": f"From {workflow.file}: edit the file, then run "
                "manage.py workflows sync-schedules (migrate does it too).",
            }
            kwargs = task_kwargs(workflow.name, periodic.payload)
            task = PeriodicTask.objects.filter(name=name).first()
            changed = False
            if task is None:
                task = PeriodicTask(name=name, kwargs=kwargs, **desired)
                task.save()
                result.created.append(name)
            else:
                for attr, value in desired.items():
                    if getattr(task, attr) != value:
                        setattr(task, attr, value)
                        changed = True
                if _json_or_none(task.kwargs) != json.loads(kwargs):
                    task.kwargs = kwargs
                    changed = True
                if changed:
                    task.save()
            schedule = WorkflowSchedule.objects.filter(periodic_task=task).first()
            if schedule is None:
                WorkflowSchedule.objects.create(
                    periodic_task=task, definition=workflow.name, overlap=periodic.overlap
                )
                changed = True
            elif (schedule.definition, schedule.overlap) != (workflow.name, periodic.overlap):
                schedule.definition, schedule.overlap = workflow.name, periodic.overlap
                schedule.save(update_fields=["definition", "overlap"])
                changed = True
            if name not in result.created:
                (result.updated if changed else result.unchanged).append(name)
        if not result.kept_because:
            stale = PeriodicTask.objects.filter(
                name__endswith=SCHEDULE_SUFFIX, task=LAUNCH_TASK, enabled=True
            ).exclude(name__in=wanted)
            for task in stale:
                task.enabled = False
                task.save()
                result.disabled.append(task.name)
        if result.changed:
            PeriodicTasks.update_changed()  # beat re-reads its schedule
    return result


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text or "null")
    except ValueError:
        return None


def _beat_schedule(periodic: Periodic) -> tuple[Any, Any]:
    """The IntervalSchedule or CrontabSchedule row for ``periodic`` (reused if it exists)."""
    from django_celery_beat.models import (
        CrontabSchedule,
        IntervalSchedule,
        crontab_schedule_celery_timezone,
    )

    if periodic.crontab is not None:
        minute, hour, day_of_month, month_of_year, day_of_week = periodic.crontab
        fields = {
            "minute": minute,
            "hour": hour,
            "day_of_month": day_of_month,
            "month_of_year": month_of_year,
            "day_of_week": day_of_week,
            "timezone": periodic.timezone or crontab_schedule_celery_timezone(),
        }
        row = CrontabSchedule.objects.filter(**fields).order_by("pk").first()
        return None, row or CrontabSchedule.objects.create(**fields)
    seconds = periodic.interval
    assert seconds is not None
    if float(seconds).is_integer():
        fields = {"every": int(seconds), "period": IntervalSchedule.SECONDS}
    else:
        fields = {"every": round(seconds * 1_000_000), "period": IntervalSchedule.MICROSECONDS}
    row = IntervalSchedule.objects.filter(**fields).order_by("pk").first()
    return row or IntervalSchedule.objects.create(**fields), None


def sync_after_migrate(sender: Any, using: str = "default", **kwargs: Any) -> None:
    """``post_migrate``: bring the YAML schedules up to date on every ``migrate``.

    Errors are logged, never raised: a deploy's ``migrate`` must not fail
    because, say, beat's tables are on another database.
    """
    from django_celery_beat.models import PeriodicTask

    if using != router.db_for_write(PeriodicTask):
        return
    try:
        result = sync_schedules()
    except DatabaseError:
        logger.warning("Could not sync the YAML workflow schedules", exc_info=True)
        return
    stdout = kwargs.get("stdout")
    if result.changed and stdout is not None and kwargs.get("verbosity", 1) >= 1:
        stdout.write(
            f"YAML workflow schedules: {len(result.created)} created, "
            f"{len(result.updated)} updated, {len(result.disabled)} disabled.\n"
        )
