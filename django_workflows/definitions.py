"""Workflow definitions: the registry, the ``@workflow`` decorator, payload schemas.

Definitions live in ``workflows.py`` modules of installed apps, imported at
startup like Celery's ``tasks.py``.
"""

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from celery.canvas import Signature
from jsonschema.validators import validator_for

from .codec import round_trip
from .exceptions import DefinitionError, InvalidPayload, UnknownWorkflow

CanvasFactory = Callable[[dict], Any]

#: How a definition's tasks and hooks are called. ``PYTHON``: the canvas runs as
#: its factory built it; hooks get ``(workflow_id, result_or_error)``.
#: ``DIRECTOR``: as celery-director calls them (YAML files): every task and hook
#: gets the keyword arguments ``workflow_id`` and ``payload``, the first tasks get
#: ``None`` first (director's ``start`` task's result), the success hook ``None``
#: (its ``end`` task's result), the failure hook no positional argument.
PYTHON = "python"
DIRECTOR = "director"


@dataclass
class Definition:
    """A named template: a factory ``payload -> canvas`` and its payload schema."""

    name: str
    factory: CanvasFactory
    schema: dict | None = None
    description: str = ""
    #: Celery signatures called as ``on_success(workflow_id, result)`` and
    #: ``on_failure(workflow_id, error)`` when a run of this definition ends.
    on_success: Any = None
    on_failure: Any = None
    #: :data:`PYTHON` or :data:`DIRECTOR`; a DIRECTOR factory is called
    #: ``factory(payload, workflow_id)``.
    calling: str = PYTHON
    #: How many of its newest runs the retention pass keeps (None: the
    #: ``RETENTION`` setting; a negative number: all), see ``django_workflows.retention``.
    retention: int | None = None
    _validator: Any = field(default=None, repr=False, compare=False)

    def hooks(self) -> dict[str, Any]:
        """The hooks as a run stores them at launch (JSON: signatures as dicts)."""
        return round_trip(
            {
                "calling": self.calling,
                "on_success": self.on_success and dict(self.on_success),
                "on_failure": self.on_failure and dict(self.on_failure),
            }
        )

    def __post_init__(self) -> None:
        if self.schema is not None:
            cls = validator_for(self.schema)
            try:
                cls.check_schema(self.schema)
            except jsonschema.SchemaError as exc:
                raise DefinitionError(
                    f"Workflow {self.name!r} has an invalid JSON Schema: {exc.message}"
                ) from exc
            self._validator = cls(self.schema)
        for hook in ("on_success", "on_failure"):
            value = getattr(self, hook)
            if value is not None and not isinstance(value, Signature):
                raise DefinitionError(
                    f"Workflow {self.name!r}: {hook} must be a Celery signature, got {value!r}."
                )
        if self.calling not in (PYTHON, DIRECTOR):
            raise DefinitionError(
                f"Workflow {self.name!r}: calling must be {PYTHON!r} or {DIRECTOR!r}, "
                f"got {self.calling!r}."
            )
        if self.retention is not None and (
            not isinstance(self.retention, int) or isinstance(self.retention, bool)
        ):
            raise DefinitionError(
                f"Workflow {self.name!r}: retention must be a number of runs, "
                f"got {self.retention!r}."
            )
        if not self.description and self.factory.__doc__:
            self.description = self.factory.__doc__.strip()

    def validate(self, payload: Any) -> None:
        """Raise :class:`InvalidPayload` listing every schema violation."""
        if self._validator is None:
            return
        errors = sorted(self._validator.iter_errors(payload), key=lambda e: list(e.path))
        if errors:
            raise InvalidPayload(
                self.name,
                [
                    {"path": ".".join(str(p) for p in e.absolute_path), "message": e.message}
                    for e in errors
                ],
            )

    def build(self, payload: Any, workflow_id: Any = None) -> Any:
        """Return the canvas for this payload (for the run ``workflow_id``, if known:
        director-style tasks receive it; a preview has none)."""
        if self.calling == DIRECTOR:
            return self.factory(payload, None if workflow_id is None else str(workflow_id))
        return self.factory(payload)

    def example_payload(self, *, with_optional: bool = False) -> Any:
        """A payload made from the schema, to show its shape without a real one.

        Bare, it is what the API builds the DAG from; ``with_optional`` adds every
        property, for the admin's launch page and ``manage.py workflows show`` to prefill.
        """
        return example_payload(self.schema, with_optional=with_optional)


class Registry:
    """Definitions by name."""

    def __init__(self) -> None:
        self._definitions: dict[str, Definition] = {}

    def register(self, definition: Definition) -> Definition:
        existing = self._definitions.get(definition.name)
        if existing is not None and existing.factory is not definition.factory:
            raise DefinitionError(
                f"Workflow {definition.name!r} is defined twice: in "
                f"{_where(existing.factory)} and in {_where(definition.factory)}."
            )
        self._definitions[definition.name] = definition
        return definition

    def unregister(self, name: str) -> None:
        self._definitions.pop(name, None)

    def find(self, name: str) -> Definition | None:
        """The definition named ``name``, or None where a missing one is no error."""
        return self._definitions.get(name)

    def get(self, name: str) -> Definition:
        try:
            return self._definitions[name]
        except KeyError:
            raise UnknownWorkflow(name, self._definitions) from None

    def __contains__(self, name: object) -> bool:
        return name in self._definitions

    def __iter__(self) -> Iterator[Definition]:
        return iter(sorted(self._definitions.values(), key=lambda d: d.name))

    def __len__(self) -> int:
        return len(self._definitions)


def example_payload(schema: dict | None, *, with_optional: bool = False) -> Any:
    """A payload for ``schema``: its defaults and examples, else the smallest value of each type.

    An object gets its required properties and those with a default (every property
    ``with_optional``). Good enough to draw the DAG of most definitions and to
    prefill a form; not meant to satisfy every schema.
    """
    if not schema:
        return {}
    return _example(schema, with_optional)


def _example(schema: Any, with_optional: bool) -> Any:
    if not isinstance(schema, dict):
        return None
    for key in ("default", "const"):
        if key in schema:
            return copy.deepcopy(schema[key])
    for key in ("examples", "enum", "anyOf", "oneOf", "allOf"):
        values = schema.get(key)
        if isinstance(values, list) and values:
            if key in ("examples", "enum"):
                return copy.deepcopy(values[0])
            return _example(values[0], with_optional)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None and ("properties" in schema or "required" in schema):
        kind = "object"
    if kind == "object":
        properties = schema.get("properties") or {}
        if with_optional:
            wanted = [*properties, *schema.get("required", [])]
        else:
            wanted = [
                *schema.get("required", []),
                *(k for k, v in properties.items() if isinstance(v, dict) and "default" in v),
            ]
        return {
            key: _example(properties.get(key, {}), with_optional) for key in dict.fromkeys(wanted)
        }
    if kind == "array":
        items = schema.get("items")
        return [_example(items, with_optional) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        return "x" * schema.get("minLength", 0)
    if kind in ("integer", "number"):
        if "minimum" in schema:
            return schema["minimum"]
        if isinstance(schema.get("exclusiveMinimum"), int | float):
            return schema["exclusiveMinimum"] + 1
        maximum = schema.get("maximum", schema.get("exclusiveMaximum"))
        return maximum - 1 if isinstance(maximum, int | float) and maximum <= 0 else 0
    if kind == "boolean":
        return False
    return None


def _where(func: Callable) -> str:
    return f"{func.__module__}.{func.__qualname__}"


registry = Registry()


def workflow(
    name: str,
    *,
    schema: dict | None = None,
    description: str = "",
    on_success: Any = None,
    on_failure: Any = None,
    retention: int | None = None,
) -> Callable[[CanvasFactory], CanvasFactory]:
    """Register the decorated ``payload -> canvas`` function as workflow ``name``."""

    def decorator(factory: CanvasFactory) -> CanvasFactory:
        registry.register(
            Definition(
                name=name,
                factory=factory,
                schema=schema,
                description=description,
                on_success=on_success,
                on_failure=on_failure,
                retention=retention,
            )
        )
        return factory

    return decorator
