"""Errors raised by django-workflows, each with a message a person can act on."""

from collections.abc import Iterable


class WorkflowError(Exception):
    """Base class of every error this app raises on purpose."""


class UnknownWorkflow(WorkflowError, LookupError):
    """No definition is registered under that name."""

    def __init__(self, name: str, available: Iterable[str]) -> None:
        self.name = name
        self.available = sorted(available)
        names = ", ".join(self.available) or "none"
        super().__init__(f"Unknown workflow {name!r}. Registered workflows: {names}.")


class InvalidPayload(WorkflowError, ValueError):
    """The payload does not satisfy the definition's JSON Schema.

    ``errors`` lists every problem as ``{"path": "a.b", "message": "..."}``.
    """

    def __init__(self, name: str, errors: list[dict[str, str]]) -> None:
        self.name = name
        self.errors = errors
        lines = "; ".join(f"{e['path'] or '(payload)'}: {e['message']}" for e in errors)
        super().__init__(f"Invalid payload for workflow {name!r}: {lines}")


class CanvasError(WorkflowError, ValueError):
    """The canvas cannot be turned into a workflow."""


class DefinitionError(WorkflowError):
    """A workflow definition is malformed (bad schema, duplicate name, ...)."""


class BrokerUnavailable(WorkflowError, ConnectionError):
    """The broker could not be reached to dispatch the workflow's first tasks.

    ``workflow`` is the run recorded as failed (resume it when the broker is back).
    """

    workflow = None


class InvalidState(WorkflowError):
    """The operation makes no sense in the run's (or task run's) current state."""

    def __init__(self, message: str, status: str = "") -> None:
        self.status = status
        super().__init__(message)


class NodeLimitExceeded(WorkflowError):
    """A run would have more task runs than ``DJANGO_WORKFLOWS["MAX_NODES"]``."""


class ResultTooLarge(WorkflowError):
    """A task returned more JSON than ``DJANGO_WORKFLOWS["MAX_RESULT_SIZE"]``: it fails."""


class NativeCeleryWarning(UserWarning):
    """The canvas has a shape native Celery is known to run wrong; the engine runs it right."""


class LaunchRefused(WorkflowError, PermissionError):
    """The launch policy refuses this person this workflow (``add_workflow``, ``CAN_LAUNCH``)."""
