"""Workflow definitions: the registry, the ``@workflow`` decorator, payload schemas.

Definitions live in ``workflows.py`` modules of installed apps, imported at
startup like Celery's ``tasks.py``.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from celery.canvas import Signature
from jsonschema.validators import validator_for

from .exceptions import DefinitionError, InvalidPayload, UnknownWorkflow

CanvasFactory = Callable[[dict], Any]


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
    _validator: Any = field(default=None, repr=False, compare=False)

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

    def build(self, payload: Any) -> Any:
        """Return the canvas for this payload."""
        return self.factory(payload)


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
            )
        )
        return factory

    return decorator
