"""The engine's errors as API errors: a status code and a JSON body a person can read.

Every body has ``detail`` (the message) and, for the errors raised here, ``code``;
some add what the client needs to act: ``errors`` (each ``{"path", "message"}``),
``status`` (the run's current state) or ``available`` (the registered workflow
names). Invalid input of any kind (a body, a query parameter, a payload failing
its schema) is the same 400: every message listed with the path of its field.
"""

from collections.abc import Iterator
from typing import Any

from django.utils.translation import gettext_lazy as _
from kombu.exceptions import OperationalError
from rest_framework import status
from rest_framework.exceptions import APIException, PermissionDenied, ValidationError
from rest_framework.settings import api_settings

from ..exceptions import (
    BrokerUnavailable,
    InvalidPayload,
    InvalidState,
    LaunchRefused,
    NodeLimitExceeded,
    UnknownWorkflow,
)


class WorkflowAPIError(APIException):
    """An error whose body carries ``detail``, ``code`` and extra fields."""

    def __init__(self, detail: Any, code: str, **extra: Any) -> None:
        super().__init__({"detail": detail, "code": code, **extra}, code)


class InvalidInputError(WorkflowAPIError):
    status_code = status.HTTP_400_BAD_REQUEST


class UnknownWorkflowError(WorkflowAPIError):
    status_code = status.HTTP_404_NOT_FOUND


class ConflictError(WorkflowAPIError):
    status_code = status.HTTP_409_CONFLICT


class BrokerUnavailableError(WorkflowAPIError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE


def as_api_exception(exc: Exception) -> Exception:
    """The API error for one of the engine's errors; any other exception unchanged."""
    if isinstance(exc, InvalidPayload):
        return InvalidInputError(
            _("The payload does not match the schema of workflow %(name)r: %(errors)s")
            % {"name": exc.name, "errors": _summary(exc.errors)},
            "invalid_payload",
            errors=exc.errors,
        )
    if isinstance(exc, LaunchRefused):
        return PermissionDenied(str(exc))
    if isinstance(exc, NodeLimitExceeded):
        return InvalidInputError(str(exc), "too_many_tasks")
    if isinstance(exc, ValidationError):
        errors = list(_flatten(exc.detail))
        return InvalidInputError(
            _("Invalid input: %(errors)s") % {"errors": _summary(errors)}, "invalid", errors=errors
        )
    if isinstance(exc, UnknownWorkflow):
        return UnknownWorkflowError(str(exc), "unknown_workflow", available=exc.available)
    if isinstance(exc, InvalidState):
        return ConflictError(str(exc), "invalid_state", status=exc.status)
    if isinstance(exc, BrokerUnavailable):
        run = getattr(exc, "workflow", None)
        extra = {"workflow": str(run.pk)} if run is not None else {}
        return BrokerUnavailableError(str(exc), "broker_unavailable", **extra)
    if isinstance(exc, OperationalError):
        # kombu's: a remote-control command (revoke, unrevoke) could not be sent.
        return BrokerUnavailableError(
            _("The broker could not be reached: %(error)s") % {"error": exc}, "broker_unavailable"
        )
    return exc


def _summary(errors: list[dict[str, str]]) -> str:
    return "; ".join(f"{e['path'] or '(top level)'}: {e['message']}" for e in errors)


def _flatten(detail: Any, path: str = "") -> Iterator[dict[str, str]]:
    """DRF's nested ``{field: [messages]}`` as ``{"path", "message"}`` items."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = "" if key == api_settings.NON_FIELD_ERRORS_KEY else str(key)
            yield from _flatten(value, f"{path}.{name}" if path and name else path or name)
    elif isinstance(detail, list):
        for index, value in enumerate(detail):
            nested = isinstance(value, dict | list)
            yield from _flatten(value, f"{path}.{index}" if nested and path else path)
    else:
        yield {"path": path, "message": str(detail)}
