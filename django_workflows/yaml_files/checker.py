"""Checking one YAML file: every problem found, with its key path and line."""

import json
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema.validators import validator_for

from .errors import (
    E_NAME,
    E_PERIODIC,
    E_READ,
    E_SCHEMA,
    E_STRUCTURE,
    E_SYNTAX,
    E_UNEXPECTED,
    W_LEGACY_SCHEDULE,
    W_QUEUE_CUSTOMS,
    LoadError,
)
from .reader import LineLoader, describe, item_line, key_line
from .specs import (
    SCHEDULE_SUFFIX,
    CanvasSpec,
    ForeachSpec,
    Periodic,
    Step,
    TaskSpec,
    YamlWorkflow,
    step_task_names,
)

logger = logging.getLogger(__name__)


_NAME_MAX = 200 - len(SCHEDULE_SUFFIX)  # PeriodicTask.name and Workflow.name hold 200
_TYPES = ("task", "group", "chain", "foreach")
_WORKFLOW_KEYS = ("tasks", "description", "queue", "hooks", "schema", "periodic", "retention")
_TASK_KEYS = ("type", "args", "kwargs", "options")
_FOREACH_KEYS = ("type", "task", "args", "kwargs", "options")
_CANVAS_KEYS = ("type", "tasks")
_QUEUE_KEYS = ("default", "customs")
_HOOK_KEYS = ("success", "failure")
_PERIODIC_KEYS = ("interval", "crontab", "payload", "overlap", "timezone", "schedule")
_CRONTAB_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
#: The order of director's deprecated ``schedule:`` crontab string (director < 0.4).
_LEGACY_FIELDS = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")
#: What django-celery-beat's CrontabSchedule holds of each field.
_CRONTAB_MAX = {
    "minute": 240,
    "hour": 96,
    "day_of_month": 124,
    "month_of_year": 64,
    "day_of_week": 64,
}
_LABELS = {
    "minute": "minute",
    "hour": "hour",
    "day_of_month": "day-of-month",
    "month_of_year": "month",
    "day_of_week": "day-of-week",
}
#: The keyword arguments every task of a YAML workflow receives, as in director.
_RESERVED_KWARGS = ("workflow_id", "payload")


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
            self.error(E_STRUCTURE, path, line, f"{what} must be a mapping, got {describe(value)}.")
            return False
        allowed = tuple(allowed)
        ok = True
        for key in value:
            if key not in allowed:
                self.error(
                    E_STRUCTURE,
                    path,
                    key_line(value, key, line),
                    f"unknown key {key!r}; {what} takes {', '.join(allowed)}.",
                )
                ok = False
        for key, twice_at in getattr(value, "duplicates", []):
            self.error(
                E_STRUCTURE, path, twice_at, f"{key!r} appears twice; YAML keeps only the last."
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
                f"got {describe(data)}.",
            )
            return []
        for key, twice_at in getattr(data, "duplicates", []):
            self.error(
                E_NAME,
                (str(key),),
                twice_at,
                "this workflow is defined twice in the file; YAML keeps only the last.",
            )
        workflows = []
        for name, body in data.items():
            workflow = self.workflow(name, body, key_line(data, name, None))
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
                f"a workflow name is a string with a dot, as project.name; got {describe(name)}.",
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
            steps = self.steps(body["tasks"], _at(path, "tasks"), key_line(body, "tasks", line))
            if steps and self.first_needs_input(steps[0]):
                self.error(
                    E_STRUCTURE,
                    _index(_at(path, "tasks"), 0),
                    item_line(body["tasks"], 0, line),
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
                key_line(body, "description", line),
                f"description must be a string, got {describe(description)}.",
            )
        queue, customs = self.queue(body, path, line)
        hooks = self.hooks(body, path, line)
        self.customs_warnings(body, steps, hooks, path, line)
        schema, schema_file = self.schema(body, path, line)
        periodic = self.periodic(body, path, line, schema)
        retention = self.retention(body, path, line)
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
            retention=retention,
        )

    # -- tasks

    def steps(self, items: Any, path: Path_, line: int | None) -> list[Step]:
        if not isinstance(items, list):
            self.error(E_STRUCTURE, path, line, f"tasks must be a list, got {describe(items)}.")
            return []
        if not items:
            self.error(E_STRUCTURE, path, line, "tasks is empty: there is nothing to run.")
            return []
        steps = []
        for i, item in enumerate(items):
            step = self.step(item, _index(path, i), item_line(items, i, line))
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
                f"a task is a task name or a mapping NAME: {{...}}, got {describe(item)}.",
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
        line = key_line(item, name, line)
        if not isinstance(name, str) or not name.strip():
            self.error(E_STRUCTURE, path, line, f"a name must be a string, got {describe(name)}.")
            return None
        if spec is None:
            return TaskSpec(task=name)
        if not isinstance(spec, dict):
            self.error(
                E_STRUCTURE,
                path,
                line,
                f"the settings of {name!r} must be a mapping (type, tasks, args, kwargs, "
                f"options...), got {describe(spec)}.",
            )
            return None
        kind = spec.get("type", "task")
        if kind not in _TYPES:
            self.error(
                E_STRUCTURE,
                _at(path, "type"),
                key_line(spec, "type", line),
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
            steps = self.steps(spec["tasks"], _at(path, "tasks"), key_line(spec, "tasks", line))
            return CanvasSpec(kind=kind, name=name, steps=steps) if steps else None
        if kind == "foreach":
            self.mapping(spec, path, line, _FOREACH_KEYS, "a foreach")
            task = spec.get("task", name)
            if not isinstance(task, str) or not task.strip():
                self.error(
                    E_STRUCTURE,
                    _at(path, "task"),
                    key_line(spec, "task", line),
                    f"task must be a task name, got {describe(task)}.",
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
                key_line(spec, "args", line),
                f"args must be a list, got {describe(args)}.",
            )
        else:
            self.json(args, _at(path, "args"), key_line(spec, "args", line))
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            self.error(
                E_STRUCTURE,
                _at(path, "kwargs"),
                key_line(spec, "kwargs", line),
                f"kwargs must be a mapping of names to values, got {describe(kwargs)}.",
            )
        else:
            for name in _RESERVED_KWARGS:
                if name in kwargs:
                    self.error(
                        E_STRUCTURE,
                        _at(_at(path, "kwargs"), name),
                        key_line(kwargs, name, line),
                        f"{name} is reserved: as in celery-director, every task receives "
                        "the run's workflow_id and payload under these names.",
                    )
            self.json(kwargs, _at(path, "kwargs"), key_line(spec, "kwargs", line))
        opath, oline = _at(path, "options"), key_line(spec, "options", line)
        if self.mapping(options, opath, oline, _OPTIONS, "options"):
            for key, value in options.items():
                check, expected = _OPTIONS[key]
                if not check(value):
                    self.error(
                        E_STRUCTURE,
                        _at(opath, key),
                        key_line(options, key, line),
                        f"{key} must be {expected}, got {describe(value)}.",
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
        qpath, qline = _at(path, "queue"), key_line(body, "queue", line)
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
                f"got {describe(value)}.",
            )
            return None, {}
        if not self.mapping(value, qpath, qline, _QUEUE_KEYS, "queue"):
            return None, {}
        default = value.get("default")
        if default is not None and (not isinstance(default, str) or not default.strip()):
            self.error(
                E_STRUCTURE,
                _at(qpath, "default"),
                key_line(value, "default", qline),
                f"default must be a queue name, got {describe(default)}.",
            )
        customs = value.get("customs") or {}
        cpath, cline = _at(qpath, "customs"), key_line(value, "customs", qline)
        if not isinstance(customs, dict):
            self.error(
                E_STRUCTURE,
                cpath,
                cline,
                f"customs must map task names to queue names, got {describe(customs)}.",
            )
            return default, {}
        for task, queue in customs.items():
            if not isinstance(task, str) or not isinstance(queue, str) or not queue.strip():
                self.error(
                    E_STRUCTURE,
                    _at(cpath, task),
                    key_line(customs, task, cline),
                    f"customs maps a task name to a queue name, got {describe(queue)}.",
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
        names = set(step_task_names(steps)) | {h for h in hooks.values() if isinstance(h, str)}
        line = key_line(queue, "customs", key_line(body, "queue", line))
        for task in customs:
            if task not in names:
                self.error(
                    W_QUEUE_CUSTOMS,
                    (*path, "queue", "customs", str(task)),
                    key_line(customs, task, line),
                    f"{task!r} is not a task of this workflow; is it misspelled?",
                )

    def hooks(self, body: dict, path: Path_, line: int | None) -> dict[str, str]:
        if body.get("hooks") is None:
            return {}
        value = body["hooks"]
        hpath, hline = _at(path, "hooks"), key_line(body, "hooks", line)
        if not self.mapping(value, hpath, hline, _HOOK_KEYS, "hooks"):
            return {}
        for outcome, task in value.items():
            if not isinstance(task, str) or not task.strip():
                self.error(
                    E_STRUCTURE,
                    _at(hpath, outcome),
                    key_line(value, outcome, hline),
                    f"a hook is a task name, got {describe(task)}.",
                )
        return dict(value)

    def schema(self, body: dict, path: Path_, line: int | None) -> tuple[dict | None, Path | None]:
        if body.get("schema") is None:
            return None, None
        value = body["schema"]
        spath, sline = _at(path, "schema"), key_line(body, "schema", line)
        if not isinstance(value, str) or not value.strip():
            self.error(
                E_SCHEMA,
                spath,
                sline,
                f"schema is a schema name or a file path, got {describe(value)}.",
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
                schema = yaml.load(text, Loader=LineLoader)  # noqa: S506 - a safe loader
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
                f"the schema in {file} must be a JSON object, got {describe(schema)}.",
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
        ppath, pline = _at(path, "periodic"), key_line(body, "periodic", line)
        if not isinstance(value, dict):
            self.error(
                E_PERIODIC,
                ppath,
                pline,
                "periodic is a mapping with interval (seconds) or crontab "
                f'("m h dom moy dow"), got {describe(value)}.',
            )
            return None
        before = len(self.errors)
        for key in value:
            if key not in _PERIODIC_KEYS:
                self.error(
                    E_PERIODIC,
                    ppath,
                    key_line(value, key, pline),
                    f"unknown key {key!r}; periodic takes {', '.join(_PERIODIC_KEYS[:-1])}.",
                )
        kinds = [k for k in ("interval", "crontab", "schedule") if k in value]
        if len(kinds) != 1:
            self.error(
                E_PERIODIC,
                ppath,
                pline,
                f"periodic needs either interval (seconds) or crontab, not {' and '.join(kinds)}."
                if kinds
                else "periodic needs interval (seconds) or crontab.",
            )
        periodic = Periodic()
        if "schedule" in value:
            self.legacy_schedule(
                value["schedule"],
                periodic,
                _at(ppath, "schedule"),
                key_line(value, "schedule", pline),
            )
        if "interval" in value:
            periodic.interval = self.interval(
                value["interval"], _at(ppath, "interval"), key_line(value, "interval", pline)
            )
        if "crontab" in value:
            periodic.crontab = self.crontab(
                value["crontab"], _at(ppath, "crontab"), key_line(value, "crontab", pline)
            )
        if value.get("timezone") is not None:
            periodic.timezone = self.timezone(
                value["timezone"], _at(ppath, "timezone"), key_line(value, "timezone", pline)
            )
        if "overlap" in value:
            periodic.overlap = self.overlap(
                value["overlap"], _at(ppath, "overlap"), key_line(value, "overlap", pline)
            )
        payload = value.get("payload")
        payload = {} if payload is None else payload
        ypath, yline = _at(ppath, "payload"), key_line(value, "payload", pline)
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
        return None if any(not e.is_warning for e in self.errors[before:]) else periodic

    def interval(self, value: Any, path: Path_, line: int | None) -> float | None:
        if not _is_number(value) or not math.isfinite(value) or value <= 0:
            self.error(
                E_PERIODIC,
                path,
                line,
                f"interval is a positive number of seconds, got {describe(value)}.",
            )
        elif value * 1_000_000 < 1:
            self.error(E_PERIODIC, path, line, "interval is shorter than a microsecond.")
        else:
            return value
        return None

    def crontab(
        self, value: Any, path: Path_, line: int | None, order: tuple = _CRONTAB_FIELDS
    ) -> tuple | None:
        """The five fields (in beat's order), each parsed as Celery's ``crontab`` parses it."""
        from celery.schedules import ParseException, crontab

        if not isinstance(value, str) or len(value.split()) != 5:
            self.error(
                E_PERIODIC,
                path,
                line,
                f'{path[-1]} is a string of 5 fields, "{" ".join(_LABELS[f] for f in order)}" '
                f'(e.g. "0 */3 * * *"), got {describe(value)}.',
            )
            return None
        fields = dict(zip(order, value.split(), strict=True))
        ok = True
        for name in _CRONTAB_FIELDS:
            text = fields[name]
            try:
                crontab(**{name: text})
                if len(text) > _CRONTAB_MAX[name]:
                    raise ValueError(f"longer than {_CRONTAB_MAX[name]} characters")
            except (ValueError, ParseException) as exc:
                self.error(
                    E_PERIODIC,
                    path,
                    line,
                    f"invalid {name.replace('_', ' ')} {text!r} in {value!r}: {exc}",
                )
                ok = False
        return tuple(fields[name] for name in _CRONTAB_FIELDS) if ok else None

    def legacy_schedule(
        self, value: Any, periodic: Periodic, path: Path_, line: int | None
    ) -> None:
        """director's deprecated ``schedule:``: seconds, or a crontab in its own field order.

        Read as director reads it (a number, or text that is a number, is an
        interval; anything else a crontab "minute hour day-of-week day-of-month
        month"), and warned about with the key to use instead.
        """
        periodic.legacy = value
        seconds = None
        if not isinstance(value, bool):
            try:
                seconds = float(value)
            except (TypeError, ValueError):
                pass
        if seconds is not None:
            periodic.interval = self.interval(seconds, path, line)
            instead = f"interval: {value}"
            note = "Rename schedule to interval."
        else:
            periodic.crontab = self.crontab(value, path, line, order=_LEGACY_FIELDS)
            if periodic.crontab is None:
                return
            instead = f'crontab: "{" ".join(periodic.crontab)}"'
            note = (
                "celery-director's schedule reads a crontab as \"minute hour day_of_week "
                'day_of_month month_of_year", crontab as "minute hour day_of_month '
                "month_of_year day_of_week\": move the day of week to the end (director's "
                'example: "0 12 1 * *" becomes "0 12 * * 1", 12:00 on Mondays).'
            )
        self.error(
            W_LEGACY_SCHEDULE,
            path,
            line,
            f"schedule is deprecated (celery-director < 0.4): write {instead} instead; "
            "this file is read as before meanwhile.",
            hint=note,
        )

    def retention(self, body: dict, path: Path_, line: int | None) -> int | None:
        """director's ``retention: {offset: N}``: keep the newest N runs of the workflow."""
        value = body.get("retention")
        if value is None:
            return None
        rpath, rline = _at(path, "retention"), key_line(body, "retention", line)
        if not self.mapping(value, rpath, rline, ("offset",), "retention"):
            return None
        offset = value.get("offset")
        if offset is None:
            return None
        if not isinstance(offset, int) or isinstance(offset, bool):
            self.error(
                E_STRUCTURE,
                _at(rpath, "offset"),
                key_line(value, "offset", rline),
                "offset is the number of newest runs to keep (negative: all), "
                f"got {describe(offset)}.",
            )
            return None
        return offset

    def timezone(self, value: Any, path: Path_, line: int | None) -> str | None:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
            self.error(E_PERIODIC, path, line, f"unknown time zone {value!r}.")
            return None
        return value

    def overlap(self, value: Any, path: Path_, line: int | None) -> str:
        from ..models import OverlapPolicy

        if value not in OverlapPolicy.values:
            self.error(
                E_PERIODIC,
                path,
                line,
                f"overlap is one of {', '.join(OverlapPolicy.values)}, got {describe(value)}.",
            )
            return OverlapPolicy.ALLOW
        return value


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
            data = yaml.load(text, Loader=LineLoader)  # noqa: S506 - a safe loader
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
